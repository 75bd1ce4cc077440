"""rosetta export: each file, loaded by plain Keras, PyTorch or onnxruntime code in a fresh process
(python -I, outside the project), gives numpy's logits and state to float32 rounding, for a batch
and for 20 characters fed one at a time with the state fed back; a fresh start (zeros; in ONNX the
ids alone, the state left out) gives numpy's fresh logits; bad input is one sentence and touches no
file."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common.checkpoint import save_checkpoint
from common.config import Config
from common.corpus import Vocabulary
from common.weights import init_weights

ROOT = Path(__file__).resolve().parents[1]
VOCAB = Vocabulary("\n !abcdefghijklmno")  # V = 18
CONFIG = Config(vocab_size=len(VOCAB), hidden_size=8, num_layers=2, dtype="float64", seed=4)
RTOL, ATOL = 1e-4, 1e-5

# Plain user code: loads each export and runs it on the inputs of inputs.npz; no project module
LOADERS = {
    "keras": """
import json, os, sys, zipfile
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import numpy as np, keras
model = keras.saving.load_model(sys.argv[1])
meta = json.loads(zipfile.ZipFile(sys.argv[1]).read("rosetta.json"))
def run(ids, h, c):
    out = model({"ids": ids, "h": h, "c": c})
    return [keras.ops.convert_to_numpy(out[k]) for k in ("logits", "h", "c")]
run_ids = None  # the state is always passed (README, Exports)
""",
    "torch": """
import json, sys
import numpy as np, torch
extra = {"rosetta.json": ""}
model = torch.export.load(sys.argv[1], extra_files=extra).module()
meta = json.loads(extra["rosetta.json"])
def run(ids, h, c):
    with torch.no_grad():
        return [t.numpy() for t in model(torch.from_numpy(ids), torch.from_numpy(h), torch.from_numpy(c))]
run_ids = None  # the state is always passed (README, Exports)
""",
    "onnx": """
import json, sys
import numpy as np, onnxruntime
session = onnxruntime.InferenceSession(sys.argv[1])
meta = json.loads(session.get_modelmeta().custom_metadata_map["rosetta.json"])
def run(ids, h, c):
    return session.run(None, {"ids": ids, "h": h, "c": c})
def run_ids(ids):  # the state left out: the graph's zero default
    return session.run(None, {"ids": ids})
""",
}
RUN = """
data = np.load(sys.argv[2])
logits, h, c = run(data["ids"], data["h"], data["c"])
L, H = meta["num_layers"], meta["hidden_size"]
sh = np.zeros((L, 1, H), np.float32); sc = np.zeros((L, 1, H), np.float32)
steps = []
for i in data["chars"]:  # one character at a time, the state fed back
    z, sh, sc = run(np.array([[i]], dtype=np.int64), sh, sc)
    steps.append(z[0, 0])
fresh = run(data["ids"], np.zeros_like(data["h"]), np.zeros_like(data["c"]))
alone = fresh if run_ids is None else run_ids(data["ids"])
assert meta["state_optional"] == (run_ids is not None)
np.savez(sys.argv[3], logits=logits, h=h, c=c, steps=np.array(steps), vocab=np.array(meta["vocab"]),
         fresh_logits=fresh[0], fresh_h=fresh[1], fresh_c=fresh[2],
         alone_logits=alone[0], alone_h=alone[1], alone_c=alone[2])
assert not any(m == "common" or m.startswith(("common.", "torch_impl", "keras_impl")) for m in sys.modules)
"""


def rosetta(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "common.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "m.safetensors"
    save_checkpoint(path, init_weights(CONFIG), VOCAB, CONFIG, "numpy")
    return path


@pytest.fixture(scope="module")
def inputs(checkpoint):
    rng = np.random.default_rng(0)
    L, B, H = CONFIG.num_layers, 3, CONFIG.hidden_size
    data = {"ids": rng.integers(0, len(VOCAB), (B, 7)).astype(np.int64),
            "h": rng.normal(0, 0.5, (L, B, H)).astype(np.float32),
            "c": rng.normal(0, 0.5, (L, B, H)).astype(np.float32),
            "chars": rng.integers(0, len(VOCAB), 20).astype(np.int64)}
    path = checkpoint.parent / "inputs.npz"
    np.savez(path, **data)
    return path, data


def numpy_reference(data):
    """numpy's logits and state for the batch, and its step-by-step logits for the 20 characters."""
    from numpy_impl.model import CharLSTM

    model = CharLSTM(CONFIG, init_weights(CONFIG))
    state = [(data["h"][l].astype(np.float64), data["c"][l].astype(np.float64)) for l in range(CONFIG.num_layers)]
    logits, state = model.forward(data["ids"], state)
    steps, s = [], None
    for i in data["chars"]:
        z, s = model.forward(np.array([[i]]), s)
        steps.append(z[0, 0])
    return logits, np.stack([h for h, _ in state]), np.stack([c for _, c in state]), np.array(steps)


def numpy_fresh(data):
    """numpy's logits and state for the batch from a fresh (zero) state."""
    from numpy_impl.model import CharLSTM

    logits, state = CharLSTM(CONFIG, init_weights(CONFIG)).forward(data["ids"], None)
    return logits, np.stack([h for h, _ in state]), np.stack([c for _, c in state])


@pytest.mark.parametrize("to", ["keras", "torch", "onnx"])
def test_export_loads_in_plain_code_and_gives_numpys_logits(to, checkpoint, inputs, tmp_path):
    suffix = {"keras": ".keras", "torch": ".pt2", "onnx": ".onnx"}[to]
    out = tmp_path / f"m{suffix}"
    proc = rosetta("export", checkpoint, "--to", to, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temporary file left beside it
    result = tmp_path / "result.npz"
    run = subprocess.run([sys.executable, "-I", "-c", LOADERS[to] + RUN, str(out), str(inputs[0]), str(result)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    got = np.load(result)
    logits, h, c, steps = numpy_reference(inputs[1])
    assert got["logits"].dtype == np.float32 and got["logits"].shape == logits.shape
    np.testing.assert_allclose(got["logits"], logits, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(got["h"], h, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(got["c"], c, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(got["steps"], steps, rtol=RTOL, atol=ATOL)
    assert str(got["vocab"]) == VOCAB.chars
    for name, want in zip(("logits", "h", "c"), numpy_fresh(inputs[1])):
        np.testing.assert_allclose(got[f"fresh_{name}"], want, rtol=RTOL, atol=ATOL)
        np.testing.assert_array_equal(got[f"alone_{name}"], got[f"fresh_{name}"])  # ONNX: ids alone = zeros


def test_torch_export_module_agrees_with_nn_lstm():
    """The scan over time that torch.export keeps dynamic computes what nn.LSTM computes."""
    import torch

    from torch_impl.export import build_module

    module = build_module(init_weights(CONFIG), CONFIG)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, len(VOCAB), (2, 5), generator=g)
    h, c = torch.randn(2, 2, 8, generator=g), torch.randn(2, 2, 8, generator=g)
    with torch.no_grad():
        for a, b in zip(module(ids, h, c), module.forward_lstm(ids, h, c)):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Bad input: one sentence, status 2, no file touched

def refused(proc, *words):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rosetta: error: ") and "Traceback" not in proc.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_missing_checkpoint(tmp_path):
    refused(rosetta("export", tmp_path / "none.safetensors", "--to", "onnx", tmp_path / "m.onnx"), "no checkpoint")
    assert list(tmp_path.iterdir()) == []


def test_unknown_format(checkpoint, tmp_path):
    refused(rosetta("export", checkpoint, "--to", "tflite", tmp_path / "m.tflite"), "tflite", "keras, torch, onnx")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("to,name,wanted", [("keras", "m.pt2", "m.keras"), ("torch", "m.onnx", "m.pt2"),
                                            ("onnx", "m", "m.onnx")])
def test_suffix_must_match(checkpoint, tmp_path, to, name, wanted):
    refused(rosetta("export", checkpoint, "--to", to, tmp_path / name), f"--to {to}", wanted)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_force(checkpoint, tmp_path):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"mine")
    refused(rosetta("export", checkpoint, "--to", "onnx", out), "already exists", "--force")
    assert out.read_bytes() == b"mine" and list(tmp_path.iterdir()) == [out]


def test_missing_package(checkpoint, tmp_path, monkeypatch):
    from common import export as export_module
    from common.errors import ConfigError

    monkeypatch.setitem(export_module.NEEDS, "onnx", ("torch", "no_such_package_for_rosetta"))
    with pytest.raises(ConfigError, match="no_such_package_for_rosetta.*pip install"):
        export_module.export(checkpoint, "onnx", tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_a_failing_write_leaves_no_file(checkpoint, tmp_path, monkeypatch):
    from common import export as export_module

    def broken(ckpt, to, tmp):
        Path(tmp).write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export_module, "write", broken)
    out = tmp_path / "m.pt2"
    with pytest.raises(Exception, match="cannot write"):
        export_module.export(checkpoint, "torch", out)
    assert list(tmp_path.iterdir()) == []


def test_metadata_names_inputs_and_vocab(checkpoint):
    from common.checkpoint import load_checkpoint
    from common.export import metadata_json

    meta = json.loads(metadata_json(load_checkpoint(checkpoint)))
    assert meta["vocab"] == VOCAB.chars and meta["num_layers"] == 2 and meta["hidden_size"] == 8
    assert set(meta["inputs"]) == {"ids", "h", "c"}
