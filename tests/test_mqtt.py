"""Home Assistant over MQTT, checked as Home Assistant sees it: a real mosquitto (loopback,
with a login), camserver as a real process, a simulated camera with a scene the test
drives, and an MQTT client subscribed to ``homeassistant/#`` and ``camserver/#``."""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
import yaml

from camserver.codecs.mjpeg import Frame, MJPEGParser
from camserver.config import Settings
from camserver.integrations import ha
from camserver.schema import StreamConfig, StreamState
from tests.conftest import CameraFactory, Proc, free_port, wait_for, wait_healthy
from tests.helpers.mqtt import HomeAssistant, Mosquitto

pytestmark = pytest.mark.requires("mosquitto")

HEADERS = {"X-Requested-With": "camserver-tests"}
# Home Assistant's discovery topic: <prefix>/<component>/[<node_id>/]<object_id>/config.
CONFIG_TOPIC = re.compile(r"^homeassistant/(binary_sensor|camera|switch)/[\w-]+/[\w-]+/config$")
REQUIRED = {"binary_sensor": "state_topic", "camera": "topic", "switch": "command_topic"}


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Mosquitto]:
    b = Mosquitto(tmp_path)
    await b.start()
    yield b
    b.kill()


async def test_home_assistant_discovers_follows_and_controls_a_camera(
    broker: Mosquitto, spawn: Callable[..., Proc], camera: CameraFactory, tmp_path: Path
) -> None:
    cam = await camera("porch", fps=10, scene={})
    port = free_port()
    server = spawn(
        port=port,
        env={
            "CAMSERVER_DB": str(tmp_path / "mqtt.db"),
            "CAMSERVER_MQTT_URL": broker.url,
            "CAMSERVER_MQTT_SNAPSHOT_INTERVAL": "1",
            "CAMSERVER_PUBLIC_URL": f"http://127.0.0.1:{port}",
        },
    )
    await wait_healthy(server)
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(
            # A new connection per request: the test pauses longer than the server keeps an
            # idle connection (5 s), and a request racing that close gets no answer.
            httpx.AsyncClient(
                base_url=server.url,
                headers=HEADERS,
                trust_env=False,
                timeout=10,
                limits=httpx.Limits(max_keepalive_connections=0),
            )
        )
        r = await http.post(
            "/api/streams",
            json={
                "name": "porch",
                "host": cam.address,
                "motion": {"enabled": True, "cooldown": 1.0},
                "recording": {"mode": "continuous"},
            },
        )
        assert r.status_code == 201, r.text
        home = HomeAssistant(broker)
        await home.connect()
        stack.push_async_callback(home.close)

        # Retained discovery configs that Home Assistant's MQTT integration accepts.
        await wait_for(lambda: len(home.configs()) == 4, 10, what="4 discovery configs")
        configs = home.configs()
        unique = set()
        for topic, config in configs.items():
            assert CONFIG_TOPIC.match(topic), topic
            component = topic.split("/")[1]
            assert REQUIRED[component] in config, (topic, config)
            # Home Assistant 2026.4 ignores "object_id": the entity id is this one.
            assert "object_id" not in config
            obj = topic.split("/")[3]
            assert config["default_entity_id"] == f"{component}.porch_{obj}"
            unique.add(config["unique_id"])
            assert config["device"]["identifiers"] == ["camserver_porch"]
            assert config["device"]["name"] == "porch"
            assert config["availability_mode"] == "all"
            assert [a["topic"] for a in config["availability"]] == [
                "camserver/status",
                "camserver/porch/availability",
            ]
        assert len(unique) == 4
        # Retained on the broker: a Home Assistant that subscribes later (a restart) gets
        # every config at once, marked retained. (The first client may have subscribed
        # before the server published them: on a busy machine they came to it live.)
        later = HomeAssistant(broker)
        await later.connect()
        stack.push_async_callback(later.close)
        await wait_for(lambda: len(later.configs()) == 4, 10, what="the configs, retained")
        retained = {t for t, _, r, _ in later.messages if r}
        assert set(configs) <= retained
        assert home.last("camserver/status") == b"online"
        motion = configs["homeassistant/binary_sensor/camserver_porch/motion/config"]
        assert motion["device_class"] == "motion"
        await wait_for(lambda: home.last("camserver/porch/motion") == b"OFF", 5, what="OFF")
        assert home.last("camserver/porch/recording") == b"ON"
        assert home.last("camserver/porch/detection") == b"ON"
        # The camera entity gets the latest frame.
        await wait_for(
            lambda: (home.last("camserver/porch/snapshot") or b"")[:2] == b"\xff\xd8",
            10,
            what="a snapshot",
        )

        # Motion: ON at the event's start, OFF at its end.
        await asyncio.sleep(2)
        mark = len(home.messages)
        cam.set_scene({"moving_object": True, "object_speed": 1.0, "object_period": 1000})

        def states() -> list[bytes]:
            return [p for t, p, _, _ in home.messages[mark:] if t == "camserver/porch/motion"]

        await wait_for(lambda: states()[:2] == [b"ON", b"OFF"], 15, what="ON then OFF")
        events = (await http.get("/api/events")).json()
        assert len(events) == 1

        # Switches work both ways: a command on MQTT changes the stream, the API shows it.
        assert home.client is not None
        await home.client.publish(
            configs["homeassistant/switch/camserver_porch/recording/config"]["command_topic"],
            b"OFF",
            qos=1,
        )

        async def recording_off() -> bool:
            r = await http.get("/api/streams/porch")
            return bool(r.json()["recording"]["mode"] == "off")

        await wait_for(recording_off, 5, what="recording off")
        await wait_for(lambda: home.last("camserver/porch/recording") == b"OFF", 5, what="OFF")
        await home.client.publish("camserver/porch/detection/set", b"OFF", qos=1)

        async def detection_off() -> bool:
            r = await http.get("/api/streams/porch")
            return r.json()["motion"]["enabled"] is False

        await wait_for(detection_off, 5, what="detection off")
        # ... and the API's changes reach Home Assistant.
        r = await http.patch("/api/streams/porch", json={"recording": {"mode": "events"}})
        assert r.status_code == 200
        await wait_for(lambda: home.last("camserver/porch/recording") == b"ON", 5, what="ON")
        await home.client.publish("camserver/porch/recording/set", b"maybe", qos=1)
        await home.client.publish("camserver/ghost/recording/set", b"ON", qos=1)

        # The broker restarts (and forgets everything): camserver connects again by itself
        # and announces everything again.
        await home.close()
        broker.kill()
        await asyncio.sleep(1.5)
        await broker.start()
        home = HomeAssistant(broker)
        await home.connect()
        stack.push_async_callback(home.close)
        await wait_for(lambda: len(home.configs()) == 4, 40, what="configs after a restart")
        await wait_for(lambda: home.last("camserver/status") == b"online", 5, what="online")

        # A stream deleted: its entities are removed (empty retained configs).
        mark = len(home.messages)
        assert (await http.delete("/api/streams/porch")).status_code == 204
        await wait_for(
            lambda: (
                sum(1 for t, p, _, _ in home.messages[mark:] if t.endswith("/config") and not p)
                == 4
            ),
            5,
            what="the entities removed",
        )

        # camserver dies without a word: the broker says so for it (the last will).
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(10)
        await wait_for(
            lambda: home.last("camserver/status") == b"offline", 60, what="the last will"
        )
    assert "ignored camserver/porch/recording/set" in server.output()


def test_commands_and_configs_as_messages() -> None:
    topics = ha.Topics()
    assert ha.parse_command(topics, "camserver/porch/recording/set", b" on ") == ha.Command(
        "porch", "recording", True
    )
    assert ha.parse_command(topics, "camserver/porch/detection/set", b"OFF") == ha.Command(
        "porch", "detection", False
    )
    for topic, payload in [
        ("camserver/porch/recording/set", b"toggle"),
        ("camserver/porch/snapshot/set", b"ON"),
        ("camserver/porch/recording", b"ON"),
        ("other/porch/recording/set", b"ON"),
        ("camserver/a/b/recording/set", b"ON"),
    ]:
        assert ha.parse_command(topics, topic, payload) is None, topic
    cfg = StreamConfig.for_host("porch", "10.0.0.5")
    states = ha.states(topics, cfg, moving=True)
    assert states == {
        "camserver/porch/availability": b"online",
        "camserver/porch/motion": b"ON",
        "camserver/porch/recording": b"OFF",
        "camserver/porch/detection": b"OFF",
    }
    # A push camera that is overdue: its entities are unavailable.
    assert ha.states(topics, cfg, moving=False, available=False)[
        "camserver/porch/availability"
    ] == (b"offline")
    assert not ha.available(StreamState.OVERDUE)
    assert ha.available(StreamState.WAITING)
    removal = ha.removal(topics, "porch")
    assert set(ha.discovery(topics, "porch", "http://x")) <= set(removal)
    assert all(p == b"" for p in removal.values())


DOCS = Path(__file__).resolve().parents[1] / "docs/home-assistant.md"
DOC_URL = "http://192.168.1.10:8000"


async def test_the_home_assistant_docs_hold_against_a_real_server(
    broker: Mosquitto, spawn: Callable[..., Proc], camera: CameraFactory, tmp_path: Path
) -> None:
    """Every block docs/home-assistant.md shows, against camserver (tokens on) and mosquitto:
    the MJPEG camera's URLs answer, the entity ids and topics are the announced ones."""
    text = DOCS.read_text()
    form, card, automation, manual = [
        yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, re.S)
    ]
    shell = re.search(r"```sh\n(.*?)```", text, re.S)
    assert shell is not None
    for var in re.findall(r"(CAMSERVER_\w+)=", shell[1]):
        assert var.removeprefix("CAMSERVER_").lower() in Settings.model_fields, var
    admin, view = "admin-Secret-0001", "view-Secret-00002"
    cam = await camera("porch", fps=10)
    port = free_port()
    server = spawn(
        port=port,
        env={
            "CAMSERVER_DB": str(tmp_path / "docs.db"),
            "CAMSERVER_API_TOKEN": admin,
            "CAMSERVER_VIEW_TOKEN": view,
            "CAMSERVER_MQTT_URL": broker.url,
            "CAMSERVER_PUBLIC_URL": f"http://127.0.0.1:{port}",
        },
    )
    await wait_healthy(server)
    home = HomeAssistant(broker)
    await home.connect()
    try:
        async with httpx.AsyncClient(
            base_url=server.url, headers={"Authorization": f"Bearer {admin}"}, trust_env=False
        ) as http:
            r = await http.post("/api/streams", json={"name": "porch", "host": cam.address})
            assert r.status_code == 201, r.text
        await wait_for(lambda: len(home.configs()) == 4, 10, what="4 discovery configs")
        configs = list(home.configs().values())
        ids = {c["default_entity_id"]: c for c in configs}

        # The MJPEG IP Camera form: its fields, and URLs that work with the view token.
        assert set(form) <= {"mjpeg_url", "still_image_url", "username", "password", "verify_ssl"}

        def real(url: str) -> str:
            return url.replace(DOC_URL, server.url).replace("YOUR_VIEW_TOKEN", view)

        async with httpx.AsyncClient(trust_env=False, timeout=10) as c:
            still = await c.get(real(form["still_image_url"]))
            assert (still.status_code, still.content[:2]) == (200, b"\xff\xd8")
            for url in (real(form["mjpeg_url"]), real(form["mjpeg_url"]) + "&fps=5"):
                async with c.stream("GET", url) as live:
                    assert live.status_code == 200
                    parser = MJPEGParser.from_content_type(live.headers["content-type"])
                    async for chunk in live.aiter_raw():
                        parser.receive_data(chunk)
                        if isinstance(parser.next_event(), Frame):
                            break
            # The view token can watch, not change (what the docs promise).
            r = await c.post(
                real(f"{DOC_URL}/api/streams/porch/stop?token=YOUR_VIEW_TOKEN"), headers=HEADERS
            )
            assert r.status_code == 403

        # The entity table, the card and the automation name announced entities.
        rows = re.findall(r"^\| `(\w+\.\w+)` \| .*? \| `([\w/]+)` \|$", text, re.M)
        assert {entity for entity, _ in rows} == set(ids)
        for entity, topic in rows:
            config = ids[entity]
            assert topic == config.get(
                "command_topic", config.get("state_topic", config.get("topic"))
            )
        assert {card["camera_image"], *card["entities"]} <= set(ids)
        (trigger,) = automation["triggers"]
        sensor = ids[trigger["entity_id"]]
        # Home Assistant's binary sensor is "on" when the payload is payload_on.
        assert (trigger["to"], sensor["payload_on"]) == ("on", "ON")
        assert automation["actions"][0]["data"]["data"]["image"].endswith(card["camera_image"])

        # Without discovery: each hand-written entity says what the announced one says.
        assert len(manual["mqtt"]) == 4
        for entry in manual["mqtt"]:
            ((component, fields),) = entry.items()
            assert REQUIRED[component] in fields
            twin = next(
                c
                for e, c in ids.items()
                if e.startswith(component + ".")
                and c.get("state_topic", c.get("topic"))
                == fields.get("state_topic", fields.get("topic"))
            )
            for key, value in fields.items():
                if key not in ("name", "unique_id"):
                    assert twin[key] == value, (component, key, value, twin.get(key))
    finally:
        await home.close()
