"""Recorded frames as H.264 MP4, made on demand for browsers.

Browsers play no MJPEG in any container, but every one plays H.264 4:2:0 in MP4
(docs/facts.md#recording). A clip decodes the recorded JPEGs, converts them to yuv420p
(ESP32 JPEGs are 4:2:2; fast bilinear scaling, the conversion costs more than the decode)
and encodes them with libx264 (``ultrafast``: ~230 VGA frames a second on one core) at
their recorded timing, with the index at the front (``faststart``) so that playback can
begin before the download ends. Blocking: call from a worker thread.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

from camserver.errors import RecordingError, RecordingNotFound
from camserver.recording.playback import RecordedFrame

__all__ = ["make_clip"]

_MS = Fraction(1, 1000)
_X264 = {"preset": "ultrafast", "crf": "26"}


def make_clip(
    frames: Iterable[RecordedFrame],
    path: Path,
    *,
    threads: int = 0,
    stop: threading.Event | None = None,
) -> int:
    """Write ``frames`` (in time order) to ``path`` as MP4; returns how many it holds.
    ``threads``: libx264's encoding threads (0: as many as it likes). Setting ``stop``
    ends it within a frame with RecordingError, leaving nothing behind (its client left)."""
    import av  # (loaded with the first recording or playback, not at start)

    # Two makers of the same file (a request and the day-end renderer) never share a
    # temporary file; the last os.replace wins with a whole file either way.
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.part")
    count = 0
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        decoder = av.CodecContext.create("mjpeg", "r")
        with av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            stream: av.VideoStream | None = None
            first = 0.0
            last_pts = -1
            for f in frames:
                if stop is not None and stop.is_set():
                    raise RecordingError("stopped before the end")
                for picture in decoder.decode(av.Packet(f.data)):
                    if stream is None:
                        stream = out.add_stream("libx264", options=_X264)
                        stream.codec_context.thread_count = threads
                        # Even sizes: 4:2:0 halves both dimensions.
                        stream.width = picture.width - picture.width % 2
                        stream.height = picture.height - picture.height % 2
                        stream.pix_fmt = "yuv420p"
                        stream.time_base = _MS
                        stream.codec_context.time_base = _MS
                        first = f.ts
                    frame = picture.reformat(
                        width=stream.width,
                        height=stream.height,
                        format="yuv420p",
                        interpolation="FAST_BILINEAR",
                    )
                    pts = max(round((f.ts - first) * 1000), last_pts + 1)
                    frame.pts, frame.time_base = pts, _MS
                    last_pts = pts
                    out.mux(stream.encode(frame))
                    count += 1
            if stream is None:
                raise RecordingNotFound("no recorded frame in that range")
            out.mux(stream.encode(None))
        os.replace(tmp, path)
    except (OSError, av.FFmpegError) as exc:
        raise RecordingError(f"cannot make the clip: {exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return count
