"""Train one ECG variant from the cache of ``tools/ecg_cache.py``, on a machine without the datasets
(the GPU runs of docs/ecg-experiments.md).

Usage::

    python tools/train_variant.py CACHE NAME MINUTES DEVICE [key=value ...]

``key`` is a :class:`models.train.TrainSettings` field (``batch=64``, ``window_s=60.0``,
``seed=1``, ``lr=0.003``), ``model.X`` a :class:`models.config.ModelConfig` override
(``model.d_model=64``) or ``src.X`` a source weight of ``BatchSampler.ECG_SOURCES``
(``src.mitdb=0.45``). The checkpoint goes to ``$OUT/NAME.pt`` without calibration or detector
thresholds; fit them on the CPU afterwards with :func:`models.train.refit_validation`, which
also writes the model card.
"""

import lzma
import os
import pickle
import sys
import time
import types

import numpy as np
import torch

sys.path.insert(0, os.getcwd())
for _name in ("wfdb", "mne", "edfio"):  # readers the cache makes unnecessary (absent on a GPU image)
    try:
        __import__(_name)
    except ImportError:
        sys.modules[_name] = types.ModuleType(_name)

import models.model_card as model_card  # noqa: E402
import models.train as T  # noqa: E402


def parse(args: list[str]) -> tuple[dict, dict, dict]:
    settings, model, sources = {}, {}, {}
    for a in args:
        k, v = a.split("=")
        value = float(v) if "." in v else int(v)
        if k.startswith("model."):
            model[k[6:]] = value
        elif k.startswith("src."):
            sources[k[4:]] = value
        else:
            settings[k] = value
    return settings, model, sources


def main() -> None:
    cache, name, minutes, device = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
    settings, model, sources = parse(sys.argv[5:])
    if sources:
        T.BatchSampler.ECG_SOURCES = {**T.BatchSampler.ECG_SOURCES, **sources}
    torch.set_num_threads(2)
    with open(cache, "rb") as f:
        blob = pickle.loads(lzma.decompress(f.read()))
    for ex in blob["train"]:
        shape = ex.meta["mask_shape"]
        ex.x = ex.x.astype(np.float32)
        ex.mask = np.unpackbits(ex.mask)[: int(np.prod(shape))].reshape(shape).astype(bool)

    def load_data(settings, config, rng, log=print):
        rng.bit_generator.state = blob["rng"]  # where `vigil train` would be after reading the records
        return blob["train"], [], blob["noise"]

    T.load_data = load_data
    T.VALIDATION_RESERVE_S = 5.0
    T.fit_on_validation = lambda network, val, burn_in: {}
    model_card.write_card = lambda path: None
    t0 = time.time()
    s = T.TrainSettings("ecg", minutes=minutes, device=device, model=model, **settings)
    print(name, s, flush=True)
    _, meta = T.train(s, out=os.environ.get("OUT", "/tmp") + f"/{name}.pt")
    tr = meta["training"]
    print(name, "done", tr["steps"], "steps", tr["loss_first"], tr["loss_last"], round(time.time() - t0), "s", flush=True)


if __name__ == "__main__":
    main()
