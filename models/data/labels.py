"""Label names and annotation codes of the public datasets, defined once.

MIT-BIH beat symbols follow the WFDB annotation codes (``ecgcodes.h``): the symbols below are
the ones ``isqrs`` counts as a beat. Rhythm changes are ``+`` annotations whose ``aux_note``
holds the rhythm, e.g. ``"(AFIB"`` (the files pad it with NUL bytes; readers strip them).
"""

from __future__ import annotations

# --- MIT-BIH family (mitdb, nstdb, cudb) -------------------------------------------------
BEAT_SYMBOLS: frozenset[str] = frozenset("NLRBAaJSVrFejnE/fQ?")
VENTRICULAR_BEATS: frozenset[str] = frozenset("VE")  # PVC, ventricular escape
RHYTHM_SYMBOL = "+"

RHYTHM_NORMAL = "(N"
RHYTHM_AF = "(AFIB"
RHYTHM_AFL = "(AFL"
RHYTHM_VT = "(VT"
RHYTHM_VFL = "(VFL"
RHYTHM_VF = "(VF"

# --- PhysioNet/CinC 2017 ----------------------------------------------------------------
CINC2017_CLASSES: dict[str, str] = {"N": "normal", "A": "af", "O": "other", "~": "noisy"}

# --- Bonn EEG (Andrzejak et al. 2001): set letter -> content -------------------------------
BONN_SETS: dict[str, str] = {
    "Z": "healthy, eyes open",
    "O": "healthy, eyes closed",
    "N": "interictal, hippocampal formation opposite the epileptogenic zone",
    "F": "interictal, epileptogenic zone",
    "S": "seizure",
}
BONN_SEIZURE_SET = "S"

# --- CHB-MIT excerpts: folder -> label ----------------------------------------------------
CHBMIT_CLASSES: dict[str, str] = {"ictal": "seizure", "preictal_10s": "preictal"}

# --- UCI EEG Eye State: eyeDetection value -> state ---------------------------------------
UCI_EYE_STATES: dict[int, str] = {0: "open", 1: "closed"}
