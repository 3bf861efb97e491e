"""Label names of the models' outputs: defined here once, used by training, serving and alerts."""

# ECG rhythm model outputs (multi-label, one sigmoid each).
NORMAL = "normal"
AF = "af"
VT = "vt"
VF = "vf"
NOISE = "noise"
ECG_LABELS: tuple[str, ...] = (NORMAL, AF, VT, VF, NOISE)

# EEG model outputs.
SEIZURE = "seizure"
ARTIFACT = "artifact"
EEG_LABELS: tuple[str, ...] = (SEIZURE, ARTIFACT)

# Numeric outputs.
HEART_RATE = "hr"  # beats per minute
