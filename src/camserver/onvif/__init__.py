"""ONVIF Profile S, minimal (issue 29): SOAP (``soap``) and the device and media services
(``services``), without I/O; ``camserver.api.onvif`` serves them on the HTTP port."""
