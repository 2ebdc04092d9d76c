"""The capture devices: a fixed pool that /live, transcodes and timeshift buffers take from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from proxy.emulator.data import Channel

__all__ = ["TunerLease", "TunerPool"]

Activity = Literal["LiveTV", "Recording"]


@dataclass(slots=True, eq=False)
class TunerLease:
    device: int
    channel: Channel
    activity: Activity
    #: the buffer file system.status shows for this activity
    file: str
    shared: bool
    users: int = 1


class TunerPool:
    def __init__(self, size: int) -> None:
        self.size = size
        self._devices: list[TunerLease | None] = [None] * size
        self._serial = 0

    @property
    def in_use(self) -> int:
        return sum(1 for lease in self._devices if lease is not None)

    def acquire(
        self, channel: Channel, *, share: bool = False, reserved: int = 0, activity: Activity = "LiveTV"
    ) -> TunerLease | None:
        """A device for ``channel``; None when every device (less ``reserved`` ones) is busy.

        With ``share`` a live request for a channel another shared request already tuned rides on
        that device, as NextPVR does when it taps an existing capture.
        """
        if share:
            for lease in self._devices:
                if lease is not None and lease.shared and lease.channel.oid == channel.oid:
                    lease.users += 1
                    return lease
        if self.in_use + reserved >= self.size:
            return None
        device = self._devices.index(None)
        self._serial += 1
        slug = channel.name.replace(" ", "")
        lease = TunerLease(
            device=device,
            channel=channel,
            activity=activity,
            file=f"/config/livetvbuffer/live-{slug}-{device + 1}-{self._serial}.ts",
            shared=share,
        )
        self._devices[device] = lease
        return lease

    def release(self, lease: TunerLease | None) -> None:
        if lease is None or self._devices[lease.device] is not lease:
            return
        lease.users -= 1
        if lease.users <= 0:
            self._devices[lease.device] = None

    def reset(self) -> None:
        self._devices = [None] * self.size

    def devices(self) -> list[tuple[int, str, TunerLease | None]]:
        """(oid, identifier, current lease) per device, for system.status."""
        return [(i + 1, f"Emulated Tuner {i + 1}", lease) for i, lease in enumerate(self._devices)]
