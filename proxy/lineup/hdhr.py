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
from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import escape

from proxy.nextpvr.models import Channel

__all__ = [
    "FIRMWARE_NAME",
    "FIRMWARE_VERSION",
    "MANUFACTURER",
    "MODEL_NUMBER",
    "derive_device_id",
    "device_auth",
    "device_id_is_valid",
    "device_xml",
    "discover",
    "is_hd",
    "lineup",
    "lineup_status",
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


def is_hd(channel: Channel) -> bool:
    """NextPVR does not say; broadcasters put it in the name ("WXYZ-HD")."""
    return bool(_HD_NAME.search(channel.name))


def lineup(channels: Sequence[Channel], *, base: str) -> list[dict[str, Any]]:
    """TV channels only: Plex and Jellyfin treat every lineup entry as a video channel."""
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
