"""Every test in this folder runs twice: in the standard event loop and in uvloop's (the
one ``camserver serve`` runs when uvloop is installed), through pytest-asyncio's
loop-factory hook, which applies to this folder only. They differ where the direct MJPEG
path cares: asyncio's transports write at once, uvloop's at the end of the loop's turn, so
a part sent straight to a socket must never overtake what a transport holds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import pytest
import uvloop


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], Any]]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
