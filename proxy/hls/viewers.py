"""Who is watching one transcode, approximately (HLS is stateless: there are only requests).

A viewer is a client (address + player) that asked for a playlist within the last few
target durations. At most ``max_tracked`` clients are remembered, oldest forgotten first.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

__all__ = ["ViewerTracker"]

#: a client counts as watching if it asked for something this recently (multiples of the target duration)
VIEWER_WINDOW = 3.0
MAX_TRACKED_VIEWERS = 1024


class ViewerTracker:
    """Last activity of a transcode and the clients seen recently; ``on_new_viewer`` fires for each
    client not seen before (so the viewer gauge moves when someone starts watching)."""

    def __init__(self, on_new_viewer: Callable[[], None], *, max_tracked: int = MAX_TRACKED_VIEWERS) -> None:
        self._on_new_viewer = on_new_viewer
        self._max = max_tracked
        self._viewers: OrderedDict[Hashable, float] = OrderedDict()
        self.last_activity = time.monotonic()

    def touch(self, client: Hashable | None = None) -> None:
        now = time.monotonic()
        self.last_activity = now
        if client is None:
            return
        new_viewer = client not in self._viewers
        self._viewers[client] = now
        self._viewers.move_to_end(client)
        while len(self._viewers) > self._max:
            self._viewers.popitem(last=False)
        if new_viewer:
            self._on_new_viewer()

    def idle_for(self) -> float:
        return time.monotonic() - self.last_activity

    def count(self, target_duration: float) -> int:
        horizon = time.monotonic() - VIEWER_WINDOW * max(target_duration, 1)
        while self._viewers:
            client, seen = next(iter(self._viewers.items()))
            if seen >= horizon:
                break
            del self._viewers[client]
        return len(self._viewers)
