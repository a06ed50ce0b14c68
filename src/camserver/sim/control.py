"""The camera's sensor settings as CameraWebServer exposes them: ``/status`` and
``/control`` (cmd_handler in app_httpd.cpp), from the firmware's own tables."""

from __future__ import annotations

from camserver.sim.frames import FRAMESIZES
from camserver.sim.http import Request, response

__all__ = ["CORS", "SENSOR_LIMITS", "STATUS_KEYS", "control"]

CORS = {"Access-Control-Allow-Origin": "*"}

# /control in CameraWebServer (cmd_handler in app_httpd.cpp): each variable goes to one
# sensor setter; the OV2640 driver refuses a value outside its range and the handler then
# answers 500, as it does for an unknown variable. The simulator's own table, written from
# the firmware, not from what camserver validates.
_SETTERS = """
framesize 0 15 | quality 4 63 | contrast -2 2 | brightness -2 2 | saturation -2 2
gainceiling 0 6 | colorbar 0 1 | awb 0 1 | agc 0 1 | aec 0 1 | hmirror 0 1 | vflip 0 1
awb_gain 0 1 | agc_gain 0 30 | aec_value 0 1200 | aec2 0 1 | dcw 0 1 | bpc 0 1 | wpc 0 1
raw_gma 0 1 | lenc 0 1 | special_effect 0 6 | wb_mode 0 4 | ae_level -2 2
led_intensity 0 255
"""
SENSOR_LIMITS = {
    var: (int(lo), int(hi))
    for var, lo, hi in (
        item.split() for item in _SETTERS.replace("\n", "|").split("|") if item.strip()
    )
}

# Keys of /status in the firmware's order; it reports no "vflip" though /control takes it.
STATUS_KEYS = (
    "xclk",
    "pixformat",
    "framesize",
    "quality",
    "brightness",
    "contrast",
    "saturation",
    "sharpness",
    "special_effect",
    "wb_mode",
    "awb",
    "awb_gain",
    "aec",
    "aec2",
    "ae_level",
    "aec_value",
    "agc",
    "agc_gain",
    "gainceiling",
    "bpc",
    "wpc",
    "raw_gma",
    "lenc",
    "hmirror",
    "dcw",
    "colorbar",
    "led_intensity",
)


def control(settings: dict[str, int], req: Request) -> bytes:
    """CameraWebServer's ``/control?var=&val=``: set one sensor variable (or refuse it as the
    firmware does)."""
    var, val = req.query.get("var"), req.query.get("val")
    if not var or val is None or val == "":
        return response(404, b"404 Not Found", "text/plain")
    limits = SENSOR_LIMITS.get(var)
    try:
        # The firmware parses val with atoi(): anything else reads as 0.
        value = int(val)
    except ValueError:
        value = 0
    if limits is None or not limits[0] <= value <= limits[1]:
        return response(500, b"500 Internal Server Error", "text/plain")
    if var == "framesize" and value not in FRAMESIZES:
        return response(500, b"500 Internal Server Error", "text/plain")
    settings[var] = value
    return response(200, b"", "text/html", CORS)
