"""Public biosignal datasets: readers, reference episode definitions, shipped excerpts.

- :mod:`.paths` where the datasets live (``VIGIL_DATASETS``, default ``../shared/data``)
- :mod:`.recording` the :class:`Recording` every reader returns (``(t, c)`` float32 µV)
- :mod:`.labels` label names and annotation codes, defined once
- :mod:`.ecg` MIT-BIH, CinC 2017/2015, CUDB, NSTDB (WFDB)
- :mod:`.eeg` Bonn, CHB-MIT, EDF (EEGMMIDB), UCI eye state
- :mod:`.episodes` AF / VT / seizure reference definitions and scoring (DESIGN §7)
- :mod:`.excerpts` the small real excerpts in ``clients/excerpts``
"""

from .excerpts import CATALOGUE, excerpt_path
from .paths import datasets_dir, require_dataset
from .recording import Recording

__all__ = ["CATALOGUE", "Recording", "datasets_dir", "excerpt_path", "require_dataset"]
