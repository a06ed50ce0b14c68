"""Sans-I/O codecs: bytes in, events out, no sockets, no clock, no camserver imports
outside this package. The server and the client (``camserver.client``) share them:
``mjpeg`` (the multipart parser) and ``jpeg`` (JPEG facts: is a frame whole, its size)."""
