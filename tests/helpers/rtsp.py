"""A minimal RTSP client for tests: requests over one TCP connection, RTP over TCP
interleaved, JPEG frames reassembled from RFC 2435 packets."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
from dataclasses import dataclass, field

__all__ = ["RtspClient", "RtspFrame", "basic", "digest_header"]


@dataclass
class RtspFrame:
    timestamp: int
    type: int
    scan: bytes


@dataclass
class RtspClient:
    host: str
    port: int
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    cseq: int = 0
    session: str | None = None
    frames: list[RtspFrame] = field(default_factory=list)
    packets: int = 0
    challenges: list[str] = field(default_factory=list)
    """The last answer's WWW-Authenticate headers."""

    async def connect(self) -> RtspClient:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    @property
    def url(self) -> str:
        return f"rtsp://{self.host}:{self.port}"

    async def request(
        self, method: str, uri: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        assert self.writer is not None
        self.cseq += 1
        lines = [f"{method} {uri} RTSP/1.0", f"CSeq: {self.cseq}"]
        if self.session:
            lines.append(f"Session: {self.session}")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        return await self.answer()

    async def answer(self) -> tuple[int, dict[str, str], bytes]:
        """The next answer (interleaved packets before it are kept as frames)."""
        assert self.reader is not None
        while True:
            first = await self.reader.readexactly(1)
            if first == b"$":
                await self._packet()
                continue
            head = first + await self.reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            status = int(lines[0].split()[1])
            headers: dict[str, str] = {}
            self.challenges = []
            for line in lines[1:]:
                if ":" in line:
                    k, _, v = line.partition(":")
                    key = k.strip().lower()
                    headers[key] = v.strip()
                    if key == "www-authenticate":
                        self.challenges.append(v.strip())
            body = await self.reader.readexactly(int(headers.get("content-length", "0")))
            if "session" in headers:
                self.session = headers["session"].split(";")[0]
            return status, headers, body

    async def _packet(self) -> None:
        assert self.reader is not None
        channel, size = struct.unpack("!BH", await self.reader.readexactly(3))
        data = await self.reader.readexactly(size)
        if channel % 2:  # RTCP
            return
        self.packets += 1
        timestamp = struct.unpack("!I", data[4:8])[0]
        offset = struct.unpack("!I", data[12:16])[0] & 0xFFFFFF
        kind = data[16]
        body = data[20:]
        if kind >= 64:
            body = body[4:]
        if offset == 0:
            length = struct.unpack("!H", body[2:4])[0]
            body = body[4 + length :]
            self.frames.append(RtspFrame(timestamp, kind, b""))
        if self.frames and self.frames[-1].timestamp == timestamp:
            frame = self.frames[-1]
            if len(frame.scan) == offset:
                frame.scan += body

    async def play_tcp(self, path: str, headers: dict[str, str] | None = None) -> int:
        """DESCRIBE, SETUP (TCP interleaved) and PLAY; the PLAY's status."""
        url = f"{self.url}/{path}"
        status, _, _ = await self.request("DESCRIBE", url, headers)
        if status != 200:
            return status
        transport = {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"}
        status, _, _ = await self.request(
            "SETUP", url + "/trackID=0", {**transport, **(headers or {})}
        )
        if status != 200:
            return status
        status, _, _ = await self.request("PLAY", url + "/", headers)
        return status

    async def read_for(self, seconds: float) -> None:
        """Read interleaved packets for ``seconds``."""
        assert self.reader is not None
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end:
            try:
                first = await asyncio.wait_for(self.reader.readexactly(1), end - loop.time())
            except TimeoutError:
                return
            assert first == b"$", first
            await self._packet()


def basic(token: str, user: str = "nvr") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()}


def digest_header(
    challenge: str, method: str, uri: str, token: str, user: str = "nvr"
) -> dict[str, str]:
    """An ``Authorization: Digest`` answering ``challenge`` (RFC 2617 without qop)."""
    params = dict(
        part.strip().split("=", 1) for part in challenge.removeprefix("Digest ").split(",")
    )
    realm, nonce = params["realm"].strip('"'), params["nonce"].strip('"')

    def md5(text: str) -> str:
        return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()

    ha1 = md5(f"{user}:{realm}:{token}")
    response = md5(f"{ha1}:{nonce}:{md5(f'{method}:{uri}')}")
    value = (
        f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
        f'response="{response}"'
    )
    return {"Authorization": value}
