"""What a test sees of a stream's states as the server reports them."""

from __future__ import annotations

import asyncio

from tests.conftest import Server


class StateRecorder:
    """Polls a stream's status and remembers every state and error seen."""

    def __init__(self, server: Server, name: str) -> None:
        self.server, self.name = server, name
        self.states: list[str] = []
        self.errors: set[str] = set()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            st = await self.server.status(self.name)
            if not self.states or self.states[-1] != st["state"]:
                self.states.append(st["state"])
            if st["last_error"]:
                self.errors.add(st["last_error"])
            await asyncio.sleep(0.03)

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
