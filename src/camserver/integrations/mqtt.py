"""The MQTT bridge to Home Assistant (``CAMSERVER_MQTT_URL``): discovery configs, states,
snapshots and switch commands (the messages are in ``integrations/ha.py``).

One task keeps a connection to the broker (aiomqtt, on paho-mqtt) and comes back by itself
after the broker goes away (backoff 1 s doubling to 30 s). On every connection it says
``online`` (the last will says ``offline``), publishes every stream's configs and states
(retained) and subscribes to the commands. Motion edges and configuration changes are
queued and sent by that task, so a slow or absent broker blocks nothing else; while it is
away, states are sent again in full on the next connection and nothing piles up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from urllib.parse import unquote, urlsplit

import aiomqtt

from camserver.errors import CamServerError, ConfigError, StreamNotFound
from camserver.integrations import ha
from camserver.motion.events import MotionEvent
from camserver.motion.service import MotionState
from camserver.schema import MotionPatch, RecordingPatch, StreamPatch, StreamStatus
from camserver.streaming.registry import StreamRegistry

__all__ = ["MqttBridge", "broker_from_url"]

log = logging.getLogger(__name__)

QUEUE = 1000


def broker_from_url(url: str) -> dict[str, object]:
    """aiomqtt.Client keyword arguments for ``mqtt://[user:pass@]host[:port]`` (``mqtts://``:
    TLS, port 8883 by default). ConfigError for anything else."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ConfigError(f"CAMSERVER_MQTT_URL must be mqtt://[user:pass@]host[:port], got {url!r}")
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError as exc:
        raise ConfigError(f"CAMSERVER_MQTT_URL: {exc}") from exc
    out: dict[str, object] = {"hostname": parts.hostname, "port": port}
    if parts.username:
        out["username"] = unquote(parts.username)
        out["password"] = unquote(parts.password or "")
    if tls:
        out["tls_context"] = ssl.create_default_context()
    return out


class MqttBridge:
    """A :class:`~camserver.motion.service.MotionSink`, and the manager's config listener."""

    def __init__(
        self,
        url: str,
        topics: ha.Topics,
        manager: StreamRegistry,
        moving: Callable[[str], bool],
        base_url: str,
        snapshot_every: float,
        client_id: str,
    ) -> None:
        self._broker = broker_from_url(url)
        self.topics = topics
        self.manager = manager
        self._moving = moving
        self._base_url = base_url
        self._snapshot_every = snapshot_every
        self._client_id = client_id
        self._queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(QUEUE)
        self._announced: set[str] = set()
        self._available: dict[str, bool] = {}
        self.connected = False
        self.connects = 0
        self.commands = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="mqtt")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # -- what others tell it (event loop, never blocks) ---------------------------------------

    def motion(self, event: MotionEvent, state: MotionState) -> None:
        topic = self.topics.state(event.stream, "motion")
        self._send(topic, (ha.ON if state == "start" else ha.OFF).encode())

    def status_changed(self, name: str, status: StreamStatus) -> None:
        """A stream's state changed: its availability follows (a push camera overdue)."""
        available = ha.available(status.state)
        if self._available.get(name, True) != available:
            self._available[name] = available
            state = b"online" if available else b"offline"
            log.info("mqtt: %s is %s", name, state.decode())
            self._send(self.topics.availability(name), state)

    def configured(self, name: str) -> None:
        """A stream was created, changed or deleted: its entities and states follow."""
        for topic, payload in self._stream_messages(name).items():
            self._send(topic, payload)

    def _send(self, topic: str, payload: bytes) -> None:
        if not self.connected:
            return  # everything is sent again on the next connection
        try:
            self._queue.put_nowait((topic, payload))
        except asyncio.QueueFull:
            log.warning("mqtt: the broker is far behind; dropped %s", topic)

    def _stream_messages(self, name: str) -> dict[str, bytes]:
        try:
            cfg = self.manager.config(name)
        except StreamNotFound:
            if name not in self._announced:
                return {}  # (told already)
            self._announced.discard(name)
            return ha.removal(self.topics, name)
        self._announced.add(name)
        available = ha.available(self.manager.status(name).state)
        self._available[name] = available
        return {
            **ha.discovery(self.topics, name, self._base_url),
            **ha.states(self.topics, cfg, self._moving(name), available),
        }

    # -- the connection ------------------------------------------------------------------------

    async def _run(self) -> None:
        delay = 1.0
        while True:
            will = aiomqtt.Will(self.topics.status, b"offline", qos=1, retain=True)
            try:
                async with aiomqtt.Client(
                    identifier=self._client_id,
                    will=will,
                    keepalive=30,
                    **self._broker,  # type: ignore[arg-type]
                ) as client:
                    delay = 1.0
                    await self._serve(client)
            except aiomqtt.MqttError as exc:
                self.connected = False
                log.warning("mqtt: %s; connecting again in %.0f s", exc, delay)
            except asyncio.CancelledError:
                self.connected = False
                raise
            await asyncio.sleep(delay)
            delay = min(30.0, delay * 2)

    async def _serve(self, client: aiomqtt.Client) -> None:
        self.connects += 1
        log.info("mqtt: connected to %s:%s", self._broker["hostname"], self._broker["port"])
        while not self._queue.empty():  # what was queued is in the full update below
            self._queue.get_nowait()
        self.connected = True
        await client.publish(self.topics.status, b"online", qos=1, retain=True)
        gone = self._announced - set(self.manager.names())
        for name in [*self.manager.names(), *gone]:
            for topic, payload in self._stream_messages(name).items():
                await client.publish(topic, payload, qos=1, retain=True)
        for topic in self.topics.commands:
            await client.subscribe(topic, qos=1)
        tasks = [
            asyncio.create_task(self._publish(client)),
            asyncio.create_task(self._snapshots(client)),
            asyncio.create_task(self._commands(client)),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # the connection's error ends this connection
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.connected = False

    async def _publish(self, client: aiomqtt.Client) -> None:
        while True:
            topic, payload = await self._queue.get()
            await client.publish(topic, payload, qos=1, retain=True)

    async def _snapshots(self, client: aiomqtt.Client) -> None:
        """The latest frame of every stream to its camera entity, now and then."""
        while True:
            for name in self.manager.names():
                with contextlib.suppress(StreamNotFound):
                    frame = self.manager.hub(name).latest
                    if frame is not None and time.time() - frame.ts < 2 * self._snapshot_every:
                        topic = self.topics.state(name, "snapshot")
                        await client.publish(topic, frame.data, qos=0, retain=True)
            await asyncio.sleep(self._snapshot_every)

    async def _commands(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            command = ha.parse_command(self.topics, message.topic.value, payload)
            if command is None:
                log.warning("mqtt: ignored %s %r", message.topic.value, payload[:40])
                continue
            self.commands += 1
            try:
                await self._apply(command)
            except CamServerError as exc:
                log.warning("mqtt: %s %s: %s", command.stream, command.switch, exc)

    async def _apply(self, command: ha.Command) -> None:
        cfg = self.manager.config(command.stream)
        if command.switch == "recording":
            # ON: event clips when motion detection is on, else every frame.
            mode = ("events" if cfg.motion.enabled else "continuous") if command.on else "off"
            if (cfg.recording.mode != "off") == command.on:
                self.configured(command.stream)  # as it was: say so (the state topic)
                return
            patch = StreamPatch(recording=RecordingPatch(mode=mode))
        else:
            patch = StreamPatch(motion=MotionPatch(enabled=command.on))
        log.info("mqtt: %s %s %s", command.stream, command.switch, "on" if command.on else "off")
        await self.manager.update(command.stream, patch)
