"""The clinical alarm engine (issue 5): the kinds table lives in :mod:`service.constants`, the
state machine in :mod:`.machine`, condition sources in :mod:`.sources`, per-session settings in
:mod:`.settings`; ``vigil evaluate alarms`` in :mod:`.evaluate`. docs/alarms.md documents it."""

from service.alarms.machine import AlertContext, Alarms, fresh_state, iso
from service.alarms.settings import SettingsError
from service.constants import FLAT_S

__all__ = ["AlertContext", "Alarms", "FLAT_S", "SettingsError", "fresh_state", "iso"]
