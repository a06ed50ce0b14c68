"""ONVIF Profile S, minimal: the device service and the media service as NVRs and Home
Assistant's ONVIF integration (onvif-zeep-async) use them. Each stream is one video source
with two profiles: ``<stream>_jpeg`` (the camera's JPEGs over RTSP, what NVRs record
without transcoding) and ``<stream>_h264`` (the ``/h264`` path; Home Assistant adds only
H.264 profiles). No I/O: answers are built from a :class:`Context`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from camserver.onvif.soap import NS, Call

__all__ = ["DEVICE", "MEDIA", "Context", "Source", "answer"]


@dataclass(frozen=True, slots=True)
class Source:
    name: str
    width: int
    height: int
    fps: float


@dataclass(frozen=True, slots=True)
class Context:
    http_base: str
    """``http://HOST:PORT`` as the client reached the server."""
    rtsp_base: str | None
    """``rtsp://HOST:PORT``, or None when RTSP is off."""
    sources: list[Source]
    version: str
    mac: str
    hostname: str


class NotSupported(LookupError):
    pass


class NoSuchProfile(LookupError):
    pass


def _e(text: object) -> str:
    return escape(str(text))


# -- the device service ---------------------------------------------------------------------


def _date_time(ctx: Context, call: Call) -> str:
    t = time.gmtime()
    utc = (
        f"<tt:Time><tt:Hour>{t.tm_hour}</tt:Hour><tt:Minute>{t.tm_min}</tt:Minute>"
        f"<tt:Second>{t.tm_sec}</tt:Second></tt:Time><tt:Date><tt:Year>{t.tm_year}</tt:Year>"
        f"<tt:Month>{t.tm_mon}</tt:Month><tt:Day>{t.tm_mday}</tt:Day></tt:Date>"
    )
    return (
        "<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime>"
        "<tt:DateTimeType>NTP</tt:DateTimeType><tt:DaylightSavings>false</tt:DaylightSavings>"
        "<tt:TimeZone><tt:TZ>UTC0</tt:TZ></tt:TimeZone>"
        f"<tt:UTCDateTime>{utc}</tt:UTCDateTime><tt:LocalDateTime>{utc}</tt:LocalDateTime>"
        "</tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>"
    )


def _capabilities(ctx: Context, call: Call) -> str:
    device = f"{ctx.http_base}/onvif/device_service"
    media = f"{ctx.http_base}/onvif/media_service"
    return (
        "<tds:GetCapabilitiesResponse><tds:Capabilities>"
        f"<tt:Device><tt:XAddr>{_e(device)}</tt:XAddr>"
        "<tt:Network><tt:IPFilter>false</tt:IPFilter><tt:ZeroConfiguration>false"
        "</tt:ZeroConfiguration><tt:IPVersion6>false</tt:IPVersion6><tt:DynDNS>false</tt:DynDNS>"
        "</tt:Network><tt:System><tt:DiscoveryResolve>true</tt:DiscoveryResolve>"
        "<tt:DiscoveryBye>false</tt:DiscoveryBye><tt:RemoteDiscovery>false</tt:RemoteDiscovery>"
        "<tt:SystemBackup>false</tt:SystemBackup><tt:SystemLogging>false</tt:SystemLogging>"
        "<tt:FirmwareUpgrade>false</tt:FirmwareUpgrade><tt:SupportedVersions><tt:Major>2"
        "</tt:Major><tt:Minor>60</tt:Minor></tt:SupportedVersions></tt:System>"
        "<tt:Security><tt:TLS1.1>false</tt:TLS1.1><tt:TLS1.2>false</tt:TLS1.2>"
        "<tt:OnboardKeyGeneration>false</tt:OnboardKeyGeneration><tt:AccessPolicyConfig>false"
        "</tt:AccessPolicyConfig><tt:X.509Token>false</tt:X.509Token><tt:SAMLToken>false"
        "</tt:SAMLToken><tt:KerberosToken>false</tt:KerberosToken><tt:RELToken>false</tt:RELToken>"
        "</tt:Security></tt:Device>"
        f"<tt:Media><tt:XAddr>{_e(media)}</tt:XAddr><tt:StreamingCapabilities>"
        "<tt:RTPMulticast>false</tt:RTPMulticast><tt:RTP_TCP>true</tt:RTP_TCP>"
        "<tt:RTP_RTSP_TCP>true</tt:RTP_RTSP_TCP></tt:StreamingCapabilities></tt:Media>"
        "</tds:Capabilities></tds:GetCapabilitiesResponse>"
    )


def _services(ctx: Context, call: Call) -> str:
    out = []
    for ns, path in ((NS["tds"], "device_service"), (NS["trt"], "media_service")):
        out.append(
            f"<tds:Service><tds:Namespace>{ns}</tds:Namespace>"
            f"<tds:XAddr>{_e(ctx.http_base)}/onvif/{path}</tds:XAddr>"
            "<tds:Version><tt:Major>2</tt:Major><tt:Minor>60</tt:Minor></tds:Version>"
            "</tds:Service>"
        )
    return f"<tds:GetServicesResponse>{''.join(out)}</tds:GetServicesResponse>"


def _information(ctx: Context, call: Call) -> str:
    return (
        "<tds:GetDeviceInformationResponse><tds:Manufacturer>camserver</tds:Manufacturer>"
        "<tds:Model>ESP32-CAM server</tds:Model>"
        f"<tds:FirmwareVersion>{_e(ctx.version)}</tds:FirmwareVersion>"
        f"<tds:SerialNumber>{_e(ctx.mac.replace(':', ''))}</tds:SerialNumber>"
        f"<tds:HardwareId>{_e(ctx.hostname)}</tds:HardwareId>"
        "</tds:GetDeviceInformationResponse>"
    )


def _scopes(ctx: Context, call: Call) -> str:
    items = [
        "onvif://www.onvif.org/Profile/Streaming",
        "onvif://www.onvif.org/type/video_encoder",
        "onvif://www.onvif.org/hardware/camserver",
        f"onvif://www.onvif.org/name/{ctx.hostname}",
    ]
    scopes = "".join(
        f"<tds:Scopes><tt:ScopeDef>Fixed</tt:ScopeDef><tt:ScopeItem>{_e(i)}</tt:ScopeItem>"
        "</tds:Scopes>"
        for i in items
    )
    return f"<tds:GetScopesResponse>{scopes}</tds:GetScopesResponse>"


def _interfaces(ctx: Context, call: Call) -> str:
    return (
        '<tds:GetNetworkInterfacesResponse><tds:NetworkInterfaces token="eth0">'
        "<tt:Enabled>true</tt:Enabled><tt:Info><tt:Name>eth0</tt:Name>"
        f"<tt:HwAddress>{_e(ctx.mac)}</tt:HwAddress><tt:MTU>1500</tt:MTU></tt:Info>"
        "</tds:NetworkInterfaces></tds:GetNetworkInterfacesResponse>"
    )


def _hostname(ctx: Context, call: Call) -> str:
    return (
        "<tds:GetHostnameResponse><tds:HostnameInformation><tt:FromDHCP>false</tt:FromDHCP>"
        f"<tt:Name>{_e(ctx.hostname)}</tt:Name></tds:HostnameInformation>"
        "</tds:GetHostnameResponse>"
    )


# -- the media service ------------------------------------------------------------------------


def _profiles_of(ctx: Context) -> list[tuple[Source, str]]:
    return [(s, codec) for s in ctx.sources for codec in ("jpeg", "h264")]


def _profile(source: Source, codec: str, tag: str = "trt:Profiles") -> str:
    token = f"{source.name}_{codec}"
    encoding = "H264" if codec == "h264" else "JPEG"
    h264 = (
        "<tt:H264><tt:GovLength>30</tt:GovLength><tt:H264Profile>Baseline</tt:H264Profile>"
        "</tt:H264>"
        if codec == "h264"
        else ""
    )
    return (
        f'<{tag} token={quoteattr(token)} fixed="true"><tt:Name>{_e(token)}</tt:Name>'
        f"<tt:VideoSourceConfiguration token={quoteattr('vsc_' + source.name)}>"
        f"<tt:Name>{_e(source.name)}</tt:Name><tt:UseCount>2</tt:UseCount>"
        f"<tt:SourceToken>{_e('src_' + source.name)}</tt:SourceToken>"
        f'<tt:Bounds x="0" y="0" width="{source.width}" height="{source.height}"/>'
        "</tt:VideoSourceConfiguration>"
        f"<tt:VideoEncoderConfiguration token={quoteattr('vec_' + token)}>"
        f"<tt:Name>{_e(token)}</tt:Name><tt:UseCount>1</tt:UseCount>"
        f"<tt:Encoding>{encoding}</tt:Encoding><tt:Resolution><tt:Width>{source.width}"
        f"</tt:Width><tt:Height>{source.height}</tt:Height></tt:Resolution>"
        "<tt:Quality>5</tt:Quality><tt:RateControl>"
        f"<tt:FrameRateLimit>{max(1, round(source.fps))}</tt:FrameRateLimit>"
        "<tt:EncodingInterval>1</tt:EncodingInterval><tt:BitrateLimit>4096</tt:BitrateLimit>"
        f"</tt:RateControl>{h264}<tt:Multicast><tt:Address><tt:Type>IPv4</tt:Type>"
        "<tt:IPv4Address>0.0.0.0</tt:IPv4Address></tt:Address><tt:Port>0</tt:Port>"
        "<tt:TTL>0</tt:TTL><tt:AutoStart>false</tt:AutoStart></tt:Multicast>"
        "<tt:SessionTimeout>PT60S</tt:SessionTimeout></tt:VideoEncoderConfiguration>"
        f"</{tag}>"
    )


def _get_profiles(ctx: Context, call: Call) -> str:
    profiles = "".join(_profile(s, c) for s, c in _profiles_of(ctx))
    return f"<trt:GetProfilesResponse>{profiles}</trt:GetProfilesResponse>"


def _find(ctx: Context, call: Call) -> tuple[Source, str]:
    token = call.text("ProfileToken") or ""
    for source, codec in _profiles_of(ctx):
        if token == f"{source.name}_{codec}":
            return source, codec
    raise NoSuchProfile(token)


def _get_profile(ctx: Context, call: Call) -> str:
    source, codec = _find(ctx, call)
    return (
        f"<trt:GetProfileResponse>{_profile(source, codec, 'trt:Profile')}</trt:GetProfileResponse>"
    )


def _video_sources(ctx: Context, call: Call) -> str:
    sources = "".join(
        f"<trt:VideoSources token={quoteattr('src_' + s.name)}>"
        f"<tt:Framerate>{s.fps:g}</tt:Framerate><tt:Resolution><tt:Width>{s.width}</tt:Width>"
        f"<tt:Height>{s.height}</tt:Height></tt:Resolution></trt:VideoSources>"
        for s in ctx.sources
    )
    return f"<trt:GetVideoSourcesResponse>{sources}</trt:GetVideoSourcesResponse>"


def _media_uri(tag: str, uri: str) -> str:
    return (
        f"<trt:{tag}><trt:MediaUri><tt:Uri>{_e(uri)}</tt:Uri>"
        "<tt:InvalidAfterConnect>false</tt:InvalidAfterConnect>"
        "<tt:InvalidAfterReboot>false</tt:InvalidAfterReboot><tt:Timeout>PT0S</tt:Timeout>"
        f"</trt:MediaUri></trt:{tag}>"
    )


def _stream_uri(ctx: Context, call: Call) -> str:
    source, codec = _find(ctx, call)
    if ctx.rtsp_base is None:
        raise NotSupported("RTSP is off on this server (CAMSERVER_RTSP_PORT=0)")
    path = f"/{source.name}/h264" if codec == "h264" else f"/{source.name}"
    return _media_uri("GetStreamUriResponse", ctx.rtsp_base + path)


def _snapshot_uri(ctx: Context, call: Call) -> str:
    source, _ = _find(ctx, call)
    return _media_uri(
        "GetSnapshotUriResponse", f"{ctx.http_base}/api/streams/{source.name}/snapshot"
    )


Operation = Callable[[Context, Call], str]
DEVICE: dict[str, Operation] = {
    "GetSystemDateAndTime": _date_time,
    "GetCapabilities": _capabilities,
    "GetServices": _services,
    "GetDeviceInformation": _information,
    "GetScopes": _scopes,
    "GetNetworkInterfaces": _interfaces,
    "GetHostname": _hostname,
}
MEDIA: dict[str, Operation] = {
    "GetProfiles": _get_profiles,
    "GetProfile": _get_profile,
    "GetVideoSources": _video_sources,
    "GetStreamUri": _stream_uri,
    "GetSnapshotUri": _snapshot_uri,
}
PUBLIC = frozenset({"GetSystemDateAndTime"})
"""What a client may ask before it authenticates (it needs the clock for its digest)."""


def answer(service: dict[str, Operation], ctx: Context, call: Call) -> str:
    """The body of the answer to ``call`` (raises NotSupported, NoSuchProfile)."""
    operation = service.get(call.operation)
    if operation is None:
        raise NotSupported(f"{call.operation} is not supported by camserver")
    return operation(ctx, call)
