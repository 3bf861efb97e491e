"""Write the ECG training split, preprocessed, to one compressed file for a machine without the
datasets (a rented GPU): ``.venv/bin/python tools/ecg_cache.py OUT.pkl.xz``.

The records go through :func:`models.train.load_data` exactly as ``vigil train ecg`` reads them
(same seed, same simulated device rates); samples are stored as int16 µV (clipped at ±32767) and
masks bit-packed, which keeps the file near 36 MB. The validation records are left out: fit them
afterwards on the CPU with :func:`models.train.refit_validation`.
"""

import lzma
import pickle
import sys

import numpy as np

from models.train import TrainSettings, build_config, load_data, seed_everything


def main(out: str) -> None:
    settings = TrainSettings(modality="ecg")
    config = build_config(settings)
    rng = seed_everything(settings.seed)
    train, _, noise = load_data(settings, config, rng)
    for ex in train:
        ex.meta["mask_shape"] = ex.mask.shape
        ex.x = np.clip(np.round(ex.x), -32767, 32767).astype(np.int16)  # (t, c) µV
        ex.mask = np.packbits(ex.mask)
    blob = {"train": train, "noise": {k: v.astype(np.float32) for k, v in noise.items()},
            "rng": rng.bit_generator.state}
    with open(out, "wb") as f:
        f.write(lzma.compress(pickle.dumps(blob, protocol=5), preset=6))


if __name__ == "__main__":
    main(sys.argv[1])
