"""Snapshot and restore in a new process with a freshly loaded model: identical continuation."""

import subprocess
import sys
import textwrap

import numpy as np
import torch
from synthetic import synthetic_signal

from models.checkpoint import load_model, save_checkpoint
from models.config import eeg_config
from models.network import Network
from models.stream import SessionStream, StreamOutput

CONTINUE = textwrap.dedent("""
    import sys
    import numpy as np
    from models.checkpoint import load_model
    from models.stream import SessionStream
    ckpt, snap, rest, out, fs = sys.argv[1:6]
    network = load_model(ckpt)
    x = np.load(rest)
    s = SessionStream(network, float(fs), x.shape[1])
    s.restore(open(snap, "rb").read())
    parts = [s.push(x[a:a + 97]) for a in range(0, len(x), 97)]
    np.savez(out, probs=np.concatenate([p.probs for p in parts]), step=np.concatenate([p.step for p in parts]),
             sample=np.concatenate([p.sample for p in parts]))
""")


def test_restore_in_a_new_process_continues_exactly(tmp_path):
    """Acceptance 4: stop at a random sample, serialise, restore elsewhere, continue."""
    torch.manual_seed(5)
    ckpt = save_checkpoint(Network(eeg_config()), tmp_path / "model.pt", {"note": "test"})
    network = load_model(ckpt)
    fs = 173.61
    x = synthetic_signal(90, fs, 3, seed=11)
    cut = int(np.random.default_rng(99).integers(int(10 * fs), int(80 * fs)))
    whole = SessionStream(network, fs, 3).push(x)

    s = SessionStream(network, fs, 3)
    first = StreamOutput.concat([s.push(x[a:min(a + 50, cut)]) for a in range(0, cut, 50)])
    (tmp_path / "snap.bin").write_bytes(s.snapshot())
    np.save(tmp_path / "rest.npy", x[cut:])
    subprocess.run([sys.executable, "-c", CONTINUE, str(ckpt), str(tmp_path / "snap.bin"),
                    str(tmp_path / "rest.npy"), str(tmp_path / "out.npz"), str(fs)], check=True)
    rest = np.load(tmp_path / "out.npz")
    probs = np.concatenate([first.probs, rest["probs"]])
    assert (np.concatenate([first.step, rest["step"]]) == whole.step).all()
    assert (np.concatenate([first.sample, rest["sample"]]) == whole.sample).all()
    np.testing.assert_allclose(probs, whole.probs, atol=1e-5, rtol=0)


def test_snapshot_is_small_and_holds_no_pickle(tmp_path):
    torch.manual_seed(0)
    s = SessionStream(Network(eeg_config()), 256.0, 19)
    s.push(synthetic_signal(5, 256.0, 19))
    data = s.snapshot()
    assert data[:2] == b"PK"  # an npz (zip) of plain arrays
    assert len(data) < 96 * 1024
