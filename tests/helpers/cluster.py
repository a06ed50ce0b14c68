"""Cluster tests' shared waits."""

from __future__ import annotations

from tests.cluster.conftest import (
    Cluster,
)
from tests.conftest import wait_for


async def settled(c: Cluster) -> dict[str, str]:
    await wait_for(c.all_held, 15, 0.1, what="every camera held")
    return await c.holders()
