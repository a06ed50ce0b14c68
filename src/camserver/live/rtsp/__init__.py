"""RTSP out (RFC 2326): every stream at ``rtsp://HOST:PORT/<stream>``, its camera's JPEGs
over RTP as they are (RFC 2435). ``wire`` (requests), ``rtp_jpeg`` (packets) and ``sdp``
are sans-I/O; ``server`` is the asyncio server."""
