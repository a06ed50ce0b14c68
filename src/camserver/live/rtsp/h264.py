"""The optional H.264 path (``rtsp://HOST:PORT/<stream>/h264``): one encoder per camera,
running only while at least one H.264 client watches.

:class:`H264Encoder` listens to the stream's hub; a worker thread (niced, like the
timelapse renderer: video for one NVR must not take the CPU from live viewers) decodes the
newest JPEG with PyAV, encodes it with libx264 (``ultrafast``/``zerolatency``, a keyframe
every 30 frames, and at once when a client joins), and hands each access unit's NAL units back to
the event loop. Frames that arrive while it encodes are skipped (the newest wins), so a slow
encoder lowers the H.264 frame rate and never queues. :class:`Encoders` starts one per
stream on demand and stops it ``GRACE`` seconds after its last client left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from camserver.live.rtsp import rtp_h264
from camserver.streaming.hub import HubFrame, LocalHub

__all__ = ["GRACE", "AccessUnit", "EncoderCounters", "Encoders", "H264Encoder"]

log = logging.getLogger(__name__)

GRACE = 10.0
"""Seconds an encoder runs on after its last client left."""
KEYFRAME_EVERY = 2.0
NICE = 10


@dataclass(frozen=True, slots=True)
class AccessUnit:
    units: list[bytes]
    timestamp: int
    """90 kHz, from the JPEG's capture time."""
    keyframe: bool


@dataclass(slots=True)
class EncoderCounters:
    started: int = 0
    stopped: int = 0
    frames: int = 0
    skipped: int = 0
    """JPEGs that arrived while the encoder was busy (the newest is encoded)."""
    failed: int = 0


@dataclass(slots=True)
class _Slot:
    frame: HubFrame | None = None
    keyframe: bool = False
    wake: threading.Event = field(default_factory=threading.Event)


class H264Encoder:
    def __init__(
        self,
        name: str,
        hub: LocalHub,
        deliver: Callable[[AccessUnit], None],
        counters: EncoderCounters,
    ) -> None:
        self.name = name
        self.hub = hub
        self._deliver = deliver
        self.counters = counters
        self.parameter_sets: list[bytes] | None = None
        """The latest SPS and PPS (for the SDP)."""
        self.ready = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._slot = _Slot()
        self._stop = False
        self._unlisten = hub.listen(self._frame)
        self._thread = threading.Thread(target=self._work, name=f"h264:{name}", daemon=True)
        self._thread.start()
        counters.started += 1
        log.info("RTSP %s: H.264 encoder started", name)

    def keyframe(self) -> None:
        """Make the next frame a keyframe (a client joined)."""
        self._slot.keyframe = True

    def stop(self) -> None:
        self._unlisten()
        self._stop = True
        self._slot.wake.set()
        self.counters.stopped += 1
        log.info("RTSP %s: H.264 encoder stopped", self.name)

    def _frame(self, frame: HubFrame | None) -> None:
        if frame is None:
            return
        if self._slot.frame is not None:
            self.counters.skipped += 1
        self._slot.frame = frame
        self._slot.wake.set()

    # -- the worker thread ------------------------------------------------------------------

    def _work(self) -> None:
        with contextlib.suppress(OSError, AttributeError):  # (Linux: a thread's own nice)
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
        import av  # (loaded only when someone wants H.264)

        decoder = av.CodecContext.create("mjpeg", "r")
        encoder: Any = None
        size: tuple[int, int] | None = None
        first_ts: float | None = None
        while True:
            self._slot.wake.wait()
            self._slot.wake.clear()
            if self._stop:
                return
            frame, self._slot.frame = self._slot.frame, None
            if frame is None:
                continue
            try:
                pictures = decoder.decode(av.Packet(frame.data))
            except av.error.FFmpegError as exc:
                self.counters.failed += 1
                log.debug("RTSP %s: a JPEG the decoder refused: %s", self.name, exc)
                continue
            for picture in pictures:
                if size != (picture.width, picture.height):
                    size = (picture.width, picture.height)
                    encoder = _encoder(av, *size)
                    first_ts = frame.ts
                    self._slot.keyframe = True
                yuv = picture.reformat(format="yuv420p")
                yuv.pts = int((frame.ts - (first_ts or frame.ts)) * 90000)
                if self._slot.keyframe:
                    self._slot.keyframe = False
                    yuv.pict_type = av.video.frame.PictureType.I
                try:
                    packets = encoder.encode(yuv)
                except av.error.FFmpegError as exc:
                    self.counters.failed += 1
                    log.warning("RTSP %s: H.264 encoding failed: %s", self.name, exc)
                    continue
                for packet in packets:
                    units = rtp_h264.nal_units(bytes(packet))
                    unit = AccessUnit(units, int(frame.ts * 90000) & 0xFFFFFFFF, packet.is_keyframe)
                    self.counters.frames += 1
                    self._loop.call_soon_threadsafe(self._handed, unit)

    def _handed(self, unit: AccessUnit) -> None:
        if rtp_h264.sprop_parameter_sets(unit.units) is not None:
            self.parameter_sets = [u for u in unit.units if u[0] & 0x1F in (7, 8)]
            self.ready.set()
        if not self._stop:
            self._deliver(unit)


def _encoder(av: Any, width: int, height: int) -> Any:
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height = width, height
    codec.pix_fmt = "yuv420p"
    codec.time_base = Fraction(1, 90000)
    codec.framerate = 15
    # x264's keyint counts frames: 30, 2 s at the 15 fps ESP32s usually send (a slower
    # camera gets them less often; a client that joins gets one at once anyway).
    codec.gop_size = int(KEYFRAME_EVERY * 15)
    codec.options = {"preset": "ultrafast", "tune": "zerolatency"}
    return codec


class Encoders:
    """One :class:`H264Encoder` per stream while it has H.264 clients (+ ``GRACE``)."""

    def __init__(self, deliver: Callable[[str, AccessUnit], None]) -> None:
        self._deliver = deliver
        self._running: dict[str, H264Encoder] = {}
        self._clients: dict[str, int] = {}
        self._stops: dict[str, asyncio.TimerHandle] = {}
        self.counters = EncoderCounters()
        self.grace = GRACE

    def running(self, name: str) -> H264Encoder | None:
        return self._running.get(name)

    def want(self, name: str, hub: LocalHub) -> H264Encoder:
        """The stream's encoder, started if need be (held until :meth:`release`)."""
        self._clients[name] = self._clients.get(name, 0) + 1
        timer = self._stops.pop(name, None)
        if timer is not None:
            timer.cancel()
        encoder = self._running.get(name)
        if encoder is None:
            encoder = self._running[name] = H264Encoder(
                name, hub, lambda unit: self._deliver(name, unit), self.counters
            )
        return encoder

    def release(self, name: str) -> None:
        left = self._clients.get(name, 1) - 1
        if left > 0:
            self._clients[name] = left
            return
        self._clients.pop(name, None)
        if name in self._running and name not in self._stops:
            loop = asyncio.get_running_loop()
            self._stops[name] = loop.call_later(self.grace, self._stop, name)

    def _stop(self, name: str) -> None:
        self._stops.pop(name, None)
        if self._clients.get(name):
            return
        encoder = self._running.pop(name, None)
        if encoder is not None:
            encoder.stop()

    def close(self) -> None:
        for timer in self._stops.values():
            timer.cancel()
        for encoder in self._running.values():
            encoder.stop()
        self._running.clear()
