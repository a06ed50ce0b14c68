"""``GET /api/streams/{name}/mjpeg`` ahead of the router (``camserver.api.mjpeg_joins``):
it admits exactly what the route would serve, and everything else reaches the route,
which answers as always."""

from __future__ import annotations

from typing import Any

import pytest

from camserver.api.mjpeg_joins import MJPEGJoins
from camserver.live.mjpeg import MJPEGResponse
from camserver.tokens import Grant
from tests.conftest import CameraFactory, Server, wait_for
from tests.helpers.mjpeg import mjpeg_viewers, streaming_camera


def _scope(server: Server, path: str, query: str = "", **over: Any) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": path,
        "query_string": query.encode(),
        "client": ("127.0.0.1", 5000),
        "state": {"runtime": server.state},
    }
    scope.update(over)
    return scope


@pytest.mark.parametrize(
    ("query", "fps"), [("", None), ("fps=2", 2.0), ("fps=.5", 0.5), ("fps=60", 60.0)]
)
async def test_it_admits_a_viewer_the_route_would_serve(
    server: Server, camera: CameraFactory, query: str, fps: float | None
) -> None:
    await streaming_camera(server, camera, fps=10)
    got = MJPEGJoins._admit(_scope(server, "/api/streams/x/mjpeg", query))
    assert isinstance(got, MJPEGResponse)
    assert got.fps == fps
    assert got.client == "127.0.0.1"
    assert got.hub is server.state.manager.hub("x")
    await got.body_iterator.aclose()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("path", "query", "over"),
    [
        ("/api/streams/nope/mjpeg", "", {}),  # no such stream: 404
        ("/api/streams/x/mjpeg", "fps=0", {}),  # 422
        ("/api/streams/x/mjpeg", "fps=61", {}),
        ("/api/streams/x/mjpeg", "fps=abc", {}),
        ("/api/streams/x/mjpeg", "fps=", {}),
        ("/api/streams/x/mjpeg", "fps=nan", {}),
        ("/api/streams/x/mjpeg", "fps=1e1", {}),  # (the route decides what else is a number)
        ("/api/streams/x/mjpeg", "fps=2&fps=3", {}),
        ("/api/streams/x/mjpeg", "", {"method": "POST"}),
        ("/api/streams/x/mjpegx", "", {}),
        ("/api/streams/x/y/mjpeg", "", {}),
        ("/api/streams/x/mjpeg", "", {"state": {}}),  # no runtime: not this app's scope
        # A token scoped to other streams: the route answers 404, as if there were none.
        ("/api/streams/x/mjpeg", "", {"grant": Grant(admin=False, streams=frozenset({"other"}))}),
    ],
)
async def test_anything_else_goes_on_to_the_route(
    server: Server, camera: CameraFactory, path: str, query: str, over: dict[str, Any]
) -> None:
    await streaming_camera(server, camera, fps=10)
    scope = _scope(server, path, query, **{k: v for k, v in over.items() if k != "grant"})
    if "grant" in over:
        scope["state"]["grant"] = over["grant"]
    assert MJPEGJoins._admit(scope) is None


async def test_a_client_over_its_cap_goes_on_to_the_route_and_gets_its_503(
    server: Server, camera: CameraFactory
) -> None:
    await streaming_camera(server, camera, fps=10)
    server.state.manager.admission.max_viewers_per_client = 1
    url = f"{server.url}/api/streams/x/mjpeg"
    async with mjpeg_viewers(url, 1) as (viewer,):
        await wait_for(lambda: len(viewer.frames) >= 1, 10, what="a frame")
        assert MJPEGJoins._admit(_scope(server, "/api/streams/x/mjpeg")) is None
        r = await server.client.get("/api/streams/x/mjpeg")
        assert r.status_code == 503, r.text
        assert "already watches" in r.json()["detail"]
    for query, code in (("fps=0", 422), ("fps=abc", 422)):
        r = await server.client.get(f"/api/streams/x/mjpeg?{query}")
        assert r.status_code == code, (query, r.text)
    r = await server.client.get("/api/streams/nope/mjpeg")
    assert r.status_code == 404
    assert "nope" in r.json()["detail"]
