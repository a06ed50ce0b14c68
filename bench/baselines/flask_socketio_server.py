"""Baseline (a): the design camserver replaces, rebuilt for comparison. Flask +
Flask-SocketIO (threading mode), one thread per camera reading the stream with
``requests``, cutting JPEGs at SOI/EOI and emitting each frame base64-encoded to the
camera's room.

    python bench/baselines/flask_socketio_server.py --camera http://127.0.0.1:P/stream --port Q
"""

from __future__ import annotations

import argparse
import base64
import threading
from typing import Any

import requests
from flask import Flask
from flask_socketio import SocketIO, join_room

app = Flask(__name__)
sio = SocketIO(app, async_mode="threading", cors_allowed_origins="*")


@sio.on("join_stream")  # type: ignore[untyped-decorator]
def join_stream(data: dict[str, Any]) -> dict[str, Any]:
    join_room(data["name"])
    return {"ok": True}


def camera_thread(name: str, url: str) -> None:
    with requests.get(url, stream=True, timeout=10) as resp:
        buf = b""
        for chunk in resp.iter_content(4096):
            buf += chunk
            while True:
                start = buf.find(b"\xff\xd8")
                end = buf.find(b"\xff\xd9", start + 2) if start >= 0 else -1
                if start < 0 or end < 0:
                    break
                jpeg, buf = buf[start : end + 2], buf[end + 2 :]
                payload = {"name": name, "data": base64.b64encode(jpeg).decode()}
                sio.emit("frame", payload, to=name)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--camera", required=True)
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    threading.Thread(target=camera_thread, args=("cam", args.camera), daemon=True).start()
    sio.run(app, host="127.0.0.1", port=args.port, allow_unsafe_werkzeug=True, log_output=False)


if __name__ == "__main__":
    main()
