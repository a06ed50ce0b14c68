"""Kernel floors for the live outputs (issue 29's RTSP bench): what the system calls alone
cost, one VGA frame at 15 fps to N viewers, with nothing else in the sending process.

- TCP: one ``send`` of the whole MJPEG part per viewer and frame (a viewer whose socket is
  full skips the frame), as camserver's MJPEG output and a minimal relay do.
- UDP: the frame's RTP/JPEG packets (camserver's own packetizer, under 1,400 bytes each) in
  one ``sendmsg`` per viewer and frame with UDP segmentation offload, as camserver's RTSP
  UDP output does.

The sender is a Python loop over prepared buffers (a microsecond or two per call, next to
the kernel's tens); its CPU is the floor any implementation pays on this machine. On
loopback the receiving side's kernel work runs in the sender's system calls too, as it
does for camserver in the same bench, so floor and camserver are measured alike.

    python bench/floor.py --send udp|tcp --count N --seconds S --ports FILE
    python bench/floor.py --sink udp|tcp --count N --seconds S --ports FILE --out FILE
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import struct
import time
from pathlib import Path

FPS = 15.0
UDP_SEGMENT = 103  # (socket.UDP_SEGMENT from Python 3.12)


def frame() -> tuple[bytes, bytes, int]:
    """A VGA frame as an MJPEG part, and as RTP packets joined for GSO (with their size)."""
    from camserver.live.rtsp.rtp_jpeg import JpegScan, packetize, parse
    from camserver.sim.camera import SimCamera

    jpeg = SimCamera("floor", framesize=10, replay=1).render()
    head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
    part = head.encode() + jpeg + b"\r\n"
    scan = parse(jpeg)
    assert isinstance(scan, JpegScan)
    packets = packetize(scan, 0, 0, 1)
    return part, b"".join(packets), len(packets[0])


def _read(path: Path) -> list[int]:
    while not path.exists() or not path.read_text():
        time.sleep(0.05)
    ports: list[int] = json.loads(path.read_text())
    return ports


def send(kind: str, count: int, seconds: float, ports_files: list[Path]) -> None:
    """UDP: to the ports the sinks wrote; TCP: listen (port written to the first file) for
    ``count`` viewers."""
    part, joined, size = frame()
    if kind == "udp":
        ports = [p for f in ports_files for p in _read(f)]
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        gso = [(socket.IPPROTO_UDP, UDP_SEGMENT, struct.pack("=H", size))]
        step = size * 40
        targets = [("127.0.0.1", p) for p in ports]

        def one_frame() -> None:
            for address in targets:
                try:
                    for i in range(0, len(joined), step):
                        sock.sendmsg([joined[i : i + step]], gso, 0, address)
                except BlockingIOError:
                    pass

    else:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(count)
        ports_files[0].write_text(json.dumps([listener.getsockname()[1]]))
        viewers = [listener.accept()[0] for _ in range(count)]
        for v in viewers:
            v.setblocking(False)
        pending: dict[socket.socket, memoryview] = {}

        def one_frame() -> None:
            for v in viewers:
                rest = pending.pop(v, None)
                try:
                    if rest is not None:  # a part half sent: finish it, skip this frame
                        n = v.send(rest)
                        if n < len(rest):
                            pending[v] = rest[n:]
                        continue
                    n = v.send(part)
                    if n < len(part):
                        pending[v] = memoryview(part)[n:]
                except BlockingIOError:
                    if rest is not None:
                        pending[v] = rest

    began = time.monotonic()
    sent = 0
    while time.monotonic() - began < seconds:
        one_frame()
        sent += 1
        time.sleep(max(0.0, began + sent / FPS - time.monotonic()))


def sink(kind: str, count: int, seconds: float, ports_file: Path, out: Path) -> None:
    part, _, _ = frame()
    frames = [0] * count
    if kind == "udp":
        socks = []
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            s.setblocking(False)
            socks.append(s)
        ports_file.write_text(json.dumps([s.getsockname()[1] for s in socks]))
    else:
        (port,) = _read(ports_file)
        socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
        for s in socks:
            s.setblocking(False)
    got = [0] * count
    end = time.monotonic() + seconds
    sel = selectors.DefaultSelector()
    for i, s in enumerate(socks):
        sel.register(s, selectors.EVENT_READ, i)
    while time.monotonic() < end:
        for key, _ in sel.select(timeout=0.2):
            i = key.data
            try:
                data = key.fileobj.recv(1 << 16)  # type: ignore[union-attr]
            except BlockingIOError:
                continue
            if kind == "udp":
                if len(data) > 1 and data[1] & 0x80:
                    frames[i] += 1
            else:
                got[i] += len(data)
    if kind == "tcp":
        frames = [n // len(part) for n in got]
    out.write_text(json.dumps({"frames": frames}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--send", choices=["udp", "tcp"])
    ap.add_argument("--sink", choices=["udp", "tcp"])
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--ports", type=Path, action="append", required=True)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.send:
        send(args.send, args.count, args.seconds, args.ports)
    elif args.sink:
        assert args.out is not None
        sink(args.sink, args.count, args.seconds, args.ports[0], args.out)


if __name__ == "__main__":
    main()
