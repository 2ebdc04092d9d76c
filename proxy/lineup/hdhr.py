"""HDHomeRun emulation (pure): what Plex, Jellyfin and Emby read from a network tuner.

Silicondust's HTTP API (info.hdhomerun.com/info/http_api): ``/discover.json`` describes the
device, ``/lineup.json`` lists ``GuideNumber``/``GuideName``/``URL`` per channel, the URL
being ``<base>/auto/v<GuideNumber>`` ("/auto/" picks the first free tuner), and
``/lineup_status.json`` reports the channel scan. Clients identify a tuner by ``DeviceID``,
so it must not change across restarts: it comes from the configuration or is derived from
NextPVR's address, with libhdhomerun's device-id check digit so tools that validate ids
(``hdhomerun_discover_validate_device_id``) accept it.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable, Sequence
from typing import Any
from xml.sax.saxutils import escape

from proxy.errors import BadRequest
from proxy.nextpvr.models import Channel

__all__ = [
    "FIRMWARE_NAME",
    "FIRMWARE_VERSION",
    "MANUFACTURER",
    "MODEL_NUMBER",
    "TRANSCODE_PROFILES",
    "ChannelCodecs",
    "derive_device_id",
    "device_auth",
    "device_id_is_valid",
    "device_xml",
    "discover",
    "is_hd",
    "lineup",
    "lineup_status",
    "transcode_behaviour",
    "udn",
]

MANUFACTURER = "Silicondust"
#: an HDHomeRun model Plex and Jellyfin know (Plex's own docs use it as their example)
MODEL_NUMBER = "HDTC-2US"
FIRMWARE_NAME = "hdhomeruntc_atsc"
FIRMWARE_VERSION = "20240101"
#: what the tuners are fed by, as far as a client can tell; "Cable" asks no postcode for OTA
SOURCE = "Cable"

# libhdhomerun: the check nibble XORs the odd nibbles through this table and the even ones as is
_CHECK_TABLE = (0xA, 0x5, 0xF, 0x6, 0x7, 0xC, 0x1, 0xB, 0x9, 0x2, 0x8, 0xD, 0x4, 0x3, 0xE, 0x0)
_HD_NAME = re.compile(r"(?<![A-Za-z])(HD|UHD|4K)(?![A-Za-z])")


def _checksum(device_id: int) -> int:
    value = 0
    for shift in range(28, -1, -4):
        nibble = (device_id >> shift) & 0xF
        value ^= _CHECK_TABLE[nibble] if (shift // 4) % 2 else nibble
    return value


def device_id_is_valid(device_id: str) -> bool:
    return bool(re.fullmatch(r"[0-9A-Fa-f]{8}", device_id)) and _checksum(int(device_id, 16)) == 0


def derive_device_id(seed: str) -> str:
    """8 hex digits, stable for ``seed`` (NextPVR's base URL), with a valid check nibble."""
    digest = hashlib.sha256(f"nextpvr-hls-proxy:{seed}".encode()).digest()
    value = int.from_bytes(digest[:4], "big") & 0xFFFFFFF0
    value |= _checksum(value)  # the last nibble enters the XOR as is, so this zeroes it
    return f"{value:08X}"


def device_auth(device_id: str) -> str:
    """A stable stand-in for the token real devices get from Silicondust's cloud."""
    return hashlib.sha256(f"device-auth:{device_id}".encode()).hexdigest()[:24]


def discover(*, friendly_name: str, device_id: str, base: str, tuner_count: int) -> dict[str, Any]:
    return {
        "FriendlyName": friendly_name,
        "Manufacturer": MANUFACTURER,
        "ModelNumber": MODEL_NUMBER,
        "FirmwareName": FIRMWARE_NAME,
        "FirmwareVersion": FIRMWARE_VERSION,
        "DeviceID": device_id,
        "DeviceAuth": device_auth(device_id),
        "BaseURL": base,
        "LineupURL": f"{base}/lineup.json",
        "TunerCount": tuner_count,
    }


#: ``?transcode=`` values of an HDHomeRun EXTEND ("hdtc" models, which Jellyfin offers transcoding
#: for) -> what ``/auto/v<n>`` serves. Every one is the original broadcast, from the channel's shared
#: tuner: NextPVR's transcoder makes HLS, not the continuous MPEG-TS an HDHomeRun client reads from
#: this URL, and Jellyfin, Plex and Emby transcode the original themselves when a player needs it.
#: Answering the original keeps one tuner per channel however many profiles are asked for.
TRANSCODE_PROFILES: dict[str, str] = {
    "none": "original", "native": "original", "heavy": "original", "mobile": "original",
    "internet720": "original", "internet540": "original", "internet480": "original",
    "internet360": "original", "internet240": "original",
}

#: the per-channel codec memory (fed by the PMTs the live-TS fan-out sees): channel id ->
#: ``(video, audio)`` in :mod:`proxy.media.psi` names, or None while the channel is unseen
ChannelCodecs = Callable[[int], tuple[str, str] | None]
_HDHR_VIDEO = {"h264": "H264", "hevc": "HEVC", "mpeg2": "MPEG2", "mpeg1": "MPEG1"}
_HDHR_AUDIO = {"aac": "AAC", "aac-latm": "AAC", "ac3": "AC3", "eac3": "EAC3", "mp2": "MPEG", "mp1": "MPEG"}


def transcode_behaviour(value: str | None) -> str:
    """What ``?transcode=value`` means (see :data:`TRANSCODE_PROFILES`); 400 for an unknown one."""
    if value is None or value == "":
        return "original"
    behaviour = TRANSCODE_PROFILES.get(value.lower())
    if behaviour is None:
        raise BadRequest(f"transcode must be one of {', '.join(TRANSCODE_PROFILES)}", field="transcode")
    return behaviour


def no_codecs(channel_id: int) -> tuple[str, str] | None:
    return None


def is_hd(channel: Channel) -> bool:
    """NextPVR does not say; broadcasters put it in the name ("WXYZ-HD")."""
    return bool(_HD_NAME.search(channel.name))


def lineup(channels: Sequence[Channel], *, base: str, codecs: ChannelCodecs = no_codecs) -> list[dict[str, Any]]:
    """TV channels only: Plex and Jellyfin treat every lineup entry as a video channel.

    ``VideoCodec``/``AudioCodec`` (Jellyfin's media info) appear once ``codecs`` knows the
    channel; left out rather than guessed before."""
    out: list[dict[str, Any]] = []
    for channel in channels:
        if channel.kind != "tv":
            continue
        entry: dict[str, Any] = {
            "GuideNumber": channel.formatted_number,
            "GuideName": channel.name,
            "URL": f"{base}/auto/v{channel.formatted_number}",
        }
        if is_hd(channel):
            entry["HD"] = 1
        seen = codecs(channel.id)
        if seen is not None:
            video, audio = seen
            if video:
                entry["VideoCodec"] = _HDHR_VIDEO.get(video, video.upper())
            if audio:
                entry["AudioCodec"] = _HDHR_AUDIO.get(audio, audio.upper())
        out.append(entry)
    return out


def lineup_status() -> dict[str, Any]:
    return {"ScanInProgress": 0, "ScanPossible": 1, "Source": SOURCE, "SourceList": [SOURCE]}


def udn(device_id: str) -> str:
    """A UUID whose first group is the DeviceID (the rest is derived from it)."""
    derived = uuid.uuid5(uuid.NAMESPACE_URL, f"hdhomerun:{device_id}")
    return f"uuid:{device_id.lower()}{str(derived)[8:]}"


def device_xml(*, friendly_name: str, device_id: str, base: str) -> str:
    """The UPnP device description real HDHomeRuns serve at ``/device.xml``."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<root xmlns="urn:schemas-upnp-org:device-1-0">\n'
        "  <specVersion><major>1</major><minor>0</minor></specVersion>\n"
        f"  <URLBase>{escape(base)}</URLBase>\n"
        "  <device>\n"
        "    <deviceType>urn:schemas-upnp-org:device:MediaServer:1</deviceType>\n"
        f"    <friendlyName>{escape(friendly_name)}</friendlyName>\n"
        f"    <manufacturer>{MANUFACTURER}</manufacturer>\n"
        f"    <modelName>{MODEL_NUMBER}</modelName>\n"
        f"    <modelNumber>{MODEL_NUMBER}</modelNumber>\n"
        f"    <serialNumber>{device_id}</serialNumber>\n"
        f"    <UDN>{udn(device_id)}</UDN>\n"
        "  </device>\n"
        "</root>\n"
    )
