"""Everything that sends frames out live: MJPEG (``mjpeg``), Socket.IO frame delivery
(``socketio``, ``sio_wire``, ``frame_acks``), and the one place each that touches the
servers' internals (``sockets``: uvicorn; ``engineio``: python-engineio). Each output
reads a stream's hub; none knows where frames come from (docs/architecture.md)."""
