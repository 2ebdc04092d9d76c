"""A faithful NextPVR emulator for the demo and the tests (nextpvr-api.md, section 6)."""

from __future__ import annotations

from proxy.emulator.app import Emulator, create_emulator_app
from proxy.emulator.config import EmulatorConfig
from proxy.emulator.faults import FaultKind, Faults
from proxy.emulator.state import STATE_KEY, Counters, EmulatorState

__all__ = [
    "STATE_KEY",
    "Counters",
    "Emulator",
    "EmulatorConfig",
    "EmulatorState",
    "FaultKind",
    "Faults",
    "create_emulator_app",
]
