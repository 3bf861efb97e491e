"""Where the session and engine modules import the alarm engine from; it lives in
:mod:`service.alarms` (kinds table in :mod:`service.constants`, documented in docs/alarms.md)."""

from service.alarms import FLAT_S, AlertContext, Alarms, iso

__all__ = ["FLAT_S", "AlertContext", "Alarms", "iso"]
