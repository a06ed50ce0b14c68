"""ESPHome devices found over mDNS (``_esphomelib._tcp.local.``), through zeroconf.

The browser listens and asks only on the addresses of the interfaces discovery may use
(``CAMSERVER_DISCOVERY_INTERFACES``), IPv4 only, like UDP discovery. For each device it
reads the announcement (address, API port, MAC, board, ESPHome version, whether its API is
encrypted) and, for a plaintext API, connects once to see whether it has a camera entity:
devices without one are left out; an encrypted device cannot be asked without its key,
so it is listed with ``camera: null`` (add it with its ``encryption_key``).

It also answers ``.local`` names for the network guard (:meth:`EsphomeBrowser.addresses_of`):
an ESPHome camera added as ``porch.local`` is reached at the address it announced, with no
system mDNS resolver needed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from camserver.schema import DiscoveredCamera

__all__ = ["SERVICE", "EsphomeBrowser", "has_camera"]

log = logging.getLogger(__name__)

SERVICE = "_esphomelib._tcp.local."
CHECK_TIMEOUT = 5.0


async def has_camera(address: str, port: int) -> bool | None:
    """Whether the plaintext ESPHome API at ``address:port`` lists a camera (None: could not
    tell)."""
    from aioesphomeapi.client import APIClient
    from aioesphomeapi.core import APIConnectionError
    from aioesphomeapi.model import CameraInfo

    from camserver import __version__

    client = APIClient(address, port, None, client_info=f"camserver {__version__} discovery")
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await client.connect(login=True)
            entities, _ = await client.list_entities_services()
    except (APIConnectionError, TimeoutError, OSError) as exc:
        log.info("mDNS: cannot ask %s:%d for its entities: %s", address, port, exc)
        return None
    finally:
        client.force_disconnect()
    return any(isinstance(e, CameraInfo) for e in entities)


def _text(value: bytes | None) -> str | None:
    return value.decode("utf-8", "replace") if value is not None else None


class EsphomeBrowser:
    """Browses for ESPHome devices; ``on_found`` gets each one that may have a camera."""

    def __init__(
        self,
        addresses: list[str],
        on_found: Callable[[DiscoveredCamera], None],
        *,
        check: Callable[[str, int], Awaitable[bool | None]] | None = None,
    ) -> None:
        self.addresses = addresses
        self._on_found = on_found
        self._check = check
        self._zc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._names: dict[str, list[str]] = {}
        """``porch.local`` → the addresses it announced."""
        self._checked: dict[tuple[str, int, str | None], bool | None] = {}
        self._listed: dict[str, DiscoveredCamera] = {}
        """Service name → its entry, refreshed while its records stay in zeroconf's cache."""
        self._refresher: asyncio.Task[None] | None = None
        self.counts = {"announced": 0, "no_camera": 0, "found": 0}

    async def start(self) -> None:
        self._zc = AsyncZeroconf(interfaces=self.addresses, ip_version=IPVersion.V4Only)
        self._browser = AsyncServiceBrowser(self._zc.zeroconf, SERVICE, handlers=[self._changed])
        self._refresher = asyncio.get_running_loop().create_task(self._refresh())
        log.info("mDNS: looking for ESPHome devices on %s", ", ".join(self.addresses))

    async def _refresh(self, every: float = 60.0) -> None:
        """A device that stays (its records answered again) stays listed: zeroconf tells of
        changes only, and discovery forgets what it has not heard of for 15 minutes."""
        while True:
            await asyncio.sleep(every)
            assert self._zc is not None
            for name, cam in list(self._listed.items()):
                if AsyncServiceInfo(SERVICE, name).load_from_cache(self._zc.zeroconf):
                    self._on_found(cam.model_copy(update={"last_seen": time.time()}))

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._browser is not None:
            await self._browser.async_cancel()
        if self._zc is not None:
            await self._zc.async_close()

    def addresses_of(self, host: str) -> list[str] | None:
        """The addresses a ``.local`` name announced, if it did."""
        return self._names.get(host.lower().rstrip("."))

    def _changed(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        if state_change is ServiceStateChange.Removed:
            return
        task = asyncio.get_running_loop().create_task(self._resolve(name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resolve(self, name: str) -> None:
        assert self._zc is not None
        info = AsyncServiceInfo(SERVICE, name)
        if not await info.async_request(self._zc.zeroconf, 3000):
            return
        addresses = info.parsed_addresses(IPVersion.V4Only)
        if not addresses or info.port is None:
            return
        self.counts["announced"] += 1
        props = {k.decode(): _text(v) for k, v in info.properties.items()}
        if info.server:
            self._names[info.server.lower().rstrip(".")] = addresses
        address, port = addresses[0], int(info.port)
        encrypted = bool(props.get("api_encryption"))
        mac = props.get("mac")
        key = (address, port, mac)
        if key not in self._checked:
            check = self._check or has_camera
            self._checked[key] = None if encrypted else await check(address, port)
        camera = self._checked[key]
        if camera is False:
            self.counts["no_camera"] += 1
            return
        now = time.time()
        self.counts["found"] += 1
        self._listed[name] = cam = DiscoveredCamera(
            name=props.get("friendly_name") or name.removesuffix("." + SERVICE),
            ip=address,
            port=port,
            stream_port=port,
            first_seen=now,
            last_seen=now,
            legacy=False,
            mac=mac,
            model=props.get("board"),
            fw=props.get("version"),
            kind="esphome",
            encrypted=encrypted,
            camera=camera,
            host=(info.server or "").rstrip(".") or None,
        )
        self._on_found(cam)
