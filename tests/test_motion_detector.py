"""The motion detector on its own: real JPEGs from the simulator's scene (textured, noisy,
an object crossing, exposure steps), decoded as the server decodes them, fed frame by frame
with their times; no I/O, no threads."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from camserver.errors import BadFrame
from camserver.motion.detector import Analysis, MotionDetector, decode_gray
from camserver.schema import MotionSettings, MotionZone
from camserver.sim.scene import Scene, SceneRenderer

FPS = 5.0
W, H = 640, 480


def frames(scene: Scene, seconds: float, start: float = 0.0) -> Iterator[tuple[float, bytes]]:
    """(time, JPEG) at FPS for ``seconds`` of ``scene``, from ``start`` seconds in."""
    renderer = SceneRenderer("cam")
    for i in range(int(seconds * FPS)):
        t = start + i / FPS
        yield t, renderer.render(scene, W, H, 50, t)


def run(settings: MotionSettings, scene: Scene, seconds: float) -> list[Analysis]:
    detector = MotionDetector(settings)
    return [detector.feed(decode_gray(jpeg), t) for t, jpeg in frames(scene, seconds)]


def test_decoding_is_scaled_and_grey() -> None:
    _, jpeg = next(frames(Scene(), 1))
    gray = decode_gray(jpeg)
    assert gray.shape == (120, 160)  # VGA at 1/4: the DCT does the scaling
    assert gray.dtype == np.uint8
    for junk in (b"", b"\xff\xd8nonsense", b"x" * 100):
        with pytest.raises(BadFrame):
            decode_gray(junk)


def test_a_still_noisy_scene_never_moves() -> None:
    out = run(MotionSettings(enabled=True), Scene(noise=6.0), 20)
    assert not any(a.started or a.moving for a in out)
    assert max(a.area for a in out) < 0.2


def test_exposure_steps_alone_start_no_event_in_a_minute() -> None:
    out = run(MotionSettings(enabled=True), Scene(exposure_jumps=True), 60)
    assert not any(a.started for a in out)
    assert max(a.area for a in out) < 1.0  # under the default min_area


def test_an_object_crossing_starts_an_event_and_it_ends_after_the_cooldown() -> None:
    # One crossing at 0.5 picture widths a second (~2.3 s in view), then nothing.
    scene = Scene(moving_object=True, object_speed=0.5, object_period=1000)
    settings = MotionSettings(enabled=True, cooldown=3.0)
    out = run(settings, scene, 12)
    started = [a for a in out if a.started]
    ended = [a for a in out if a.ended]
    assert len(started) == 1, [a.area for a in out]
    assert len(ended) == 1
    first_moving = next(a.ts for a in out if a.moving)
    # min_frames (2) frames in a row at 5 fps: within half a second of the object showing.
    assert started[0].ts - first_moving <= 1 / FPS + 1e-9
    assert started[0].ts <= 1.0
    last_moving = max(a.ts for a in out if a.moving)
    assert ended[0].ts == pytest.approx(last_moving + settings.cooldown, abs=1 / FPS + 1e-9)
    assert max(a.area for a in out) > 5


def test_zones_decide_which_motion_counts() -> None:
    scene = Scene(moving_object=True, object_speed=0.5, object_period=1000)
    band = [(0.0, 0.2), (1.0, 0.2), (1.0, 0.8), (0.0, 0.8)]  # where the object crosses
    top = [(0.0, 0.0), (1.0, 0.0), (1.0, 0.15), (0.0, 0.15)]  # where it never goes
    cases = [
        ([MotionZone(kind="exclude", points=band)], False),
        ([MotionZone(kind="include", points=top)], False),
        ([MotionZone(kind="include", points=band)], True),
        ([MotionZone(kind="exclude", points=top)], True),
    ]
    for zones, expected in cases:
        out = run(MotionSettings(enabled=True, zones=zones), scene, 5)
        assert any(a.started for a in out) is expected, (zones, max(a.area for a in out))


def test_a_lighting_change_pauses_instead_of_starting_an_event() -> None:
    settings = MotionSettings(enabled=True, light_change_pause=2.0)
    detector = MotionDetector(settings)
    day = [decode_gray(jpeg) for _, jpeg in frames(Scene(), 2)]
    out = [detector.feed(g, i / FPS) for i, g in enumerate(day)]
    # The IR filter switches: another picture altogether, everywhere at once.
    night = [255 - g for g in day]
    out += [detector.feed(g, 2 + i / FPS) for i, g in enumerate(night)]
    assert any(a.light_change for a in out)
    assert not any(a.started for a in out)


def test_a_new_frame_size_restarts_the_background() -> None:
    detector = MotionDetector(MotionSettings(enabled=True, min_frames=1))
    big = [decode_gray(j) for _, j in frames(Scene(), 1)]
    small = [g[::2, ::2].copy() for g in big]
    out = [detector.feed(g, i / FPS) for i, g in enumerate(big + small)]
    assert not any(a.started for a in out)


def test_an_event_ends_when_frames_stop_coming() -> None:
    detector = MotionDetector(MotionSettings(enabled=True, cooldown=2.0))
    scene = Scene(moving_object=True, object_speed=0.5)
    out = [detector.feed(decode_gray(j), t) for t, j in frames(scene, 1.5)]
    assert any(a.started for a in out)
    assert detector.idle(1.5) is None  # not yet
    ended = detector.idle(1.4 + 2.0 + 0.01)
    assert ended is not None
    assert ended.ended
    assert detector.idle(10) is None  # once
