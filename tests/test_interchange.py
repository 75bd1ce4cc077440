"""Checkpoints cross frameworks: a model trained by `rosetta train` in numpy, torch and keras (on
TensorFlow and on JAX) is loaded by every framework and path, Keras on each of its three backends, which must compute the same logits (float32, 1e-5) and the
same greedy sample; a checkpoint is refused by a model of another size or vocabulary.

TensorFlow and PyTorch run only in subprocesses: three training runs (the command line), then
one loader process per framework that reads all three checkpoints.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common.checkpoint import load_checkpoint
from common.corpus import Vocabulary
from common.errors import CheckpointError
from common.frameworks import make_model, paths_on
from common.sampling import sample
from common.weights import init_weights

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--hidden-size", "16", "--num-layers", "2", "--batch-size", "4", "--seq-length", "16",
        "--learning-rate", "0.01", "--seed", "5", "--dtype", "float32"]
TEXT = "".join(f"{w} the quick brown fox jumps over the lazy dog.\n" for w in ("ONE", "TWO", "SIX") * 40)
TRAINED_BY = {"numpy": "cell", "torch": "layer", "keras": "cell", "keras@jax": "layer"}  # who trains, on which path
LOADERS = ["torch", "keras@tensorflow", "keras@jax", "keras@torch"]  # Keras once per backend


def split_name(name):
    """'keras@jax' -> ('keras', {'KERAS_BACKEND': 'jax'}); 'torch' -> ('torch', {})."""
    framework, _, backend = name.partition("@")
    return framework, ({"KERAS_BACKEND": backend} if backend else {})


def paths_of(name):
    """The paths a loader runs: keras' "fast" is TensorFlow's only."""
    framework, env = split_name(name)
    return paths_on(framework, env.get("KERAS_BACKEND", "tensorflow"))
PRIME = "TWO the"

LOADER = """
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from common.checkpoint import load_checkpoint
from common.errors import CheckpointError
from common.frameworks import make_model, paths_on
from common.sampling import sample

framework, checkpoints, x_file, out_file, prime = sys.argv[2], json.loads(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
x = np.load(x_file)
arrays, texts = {}, {}
for path in paths_on(framework):  # keras' "fast" runs on KERAS_BACKEND=tensorflow only
    for name, file in checkpoints.items():
        ckpt = load_checkpoint(file)
        model = make_model(framework, ckpt.config, ckpt.weights, path=path)
        logits, state = model.forward(x)
        arrays[f"logits/{path}/{name}"] = np.asarray(logits)
        for w, value in model.get_weights().items():
            arrays[f"weights/{path}/{name}/{w}"] = np.asarray(value)
        texts[f"sample/{path}/{name}"] = sample(model, ckpt.vocab, 40, top_k=1, prime=prime, seed=0)
        try:
            make_model(framework, ckpt.config.replace(hidden_size=ckpt.config.hidden_size + 1), ckpt.weights, path=path)
            texts[f"refused/{path}/{name}"] = "accepted"
        except CheckpointError as e:
            texts[f"refused/{path}/{name}"] = str(e)
np.savez(out_file, **arrays)
print(json.dumps(texts))
"""


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """{framework: checkpoint path} after 6 training steps of each, run side by side."""
    tmp = tmp_path_factory.mktemp("interchange")
    corpus = tmp / "tiny.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    procs = {}
    for name, path in TRAINED_BY.items():
        framework, env = split_name(name)
        backend = ["--backend", env["KERAS_BACKEND"]] if env else []
        cmd = [sys.executable, "-m", "common.cli", "train", "--framework", framework, "--path", path, *backend,
               "--corpus", str(corpus), "--iters", "6", "--val-every", "0", "--sample-every", "0",
               "--save", str(tmp / f"{name}.safetensors"), "--threads", "1", *TINY]
        procs[name] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    for framework, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"training {framework} failed:\n{stderr[-3000:]}"
        assert "step 6/6" in stdout
    return {framework: tmp / f"{framework}.safetensors" for framework in TRAINED_BY}


@pytest.fixture(scope="module")
def fixed_batch(checkpoints):
    V = load_checkpoint(checkpoints["numpy"]).config.vocab_size
    x = np.random.default_rng(0).integers(0, V, size=(3, 11))
    file = checkpoints["numpy"].parent / "x.npy"
    np.save(file, x)
    return x, file


@pytest.fixture(scope="module")
def loaded(checkpoints, fixed_batch):
    """{framework: (arrays, texts)}: what each framework computed from every checkpoint."""
    x, x_file = fixed_batch
    names = json.dumps({k: str(v) for k, v in checkpoints.items()})
    procs = {}
    for loader in LOADERS:
        framework, env = split_name(loader)
        out = x_file.parent / f"loaded-{loader}.npz"
        procs[loader] = (out, subprocess.Popen(
            [sys.executable, "-c", LOADER, str(ROOT), framework, names, str(x_file), str(out), PRIME],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, **env}))
    results = {}
    for framework, (out, proc) in procs.items():
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"loading in {framework} failed:\n{stderr[-3000:]}"
        with np.load(out) as f:
            results[framework] = ({k: f[k] for k in f.files}, json.loads(stdout.splitlines()[-1]))
    return results


def numpy_logits(file, x):
    ckpt = load_checkpoint(file)
    return make_model("numpy", ckpt.config, ckpt.weights).forward(x)[0]


def test_the_three_runs_trained_the_same_model_shape(checkpoints):
    vocab = Vocabulary.from_text(TEXT)
    for name, file in checkpoints.items():
        framework, _ = split_name(name)
        ckpt = load_checkpoint(file, vocab=vocab)
        assert ckpt.framework == framework
        assert (ckpt.config.hidden_size, ckpt.config.num_layers, ckpt.config.dtype) == (16, 2, "float32")
        start = init_weights(ckpt.config)
        moved = max(float(np.abs(ckpt.weights[k] - start[k]).max()) for k in start)
        assert moved > 1e-3, f"{framework}: the weights did not move from their initial values"


@pytest.mark.parametrize("framework", LOADERS)
def test_every_framework_computes_the_same_logits_from_every_checkpoint(framework, checkpoints, fixed_batch, loaded):
    x, _ = fixed_batch
    arrays, _ = loaded[framework]
    for path in paths_of(framework):
        for name, file in checkpoints.items():
            expected = numpy_logits(file, x)
            got = arrays[f"logits/{path}/{name}"]
            assert got.shape == expected.shape == (3, 11, len(set(TEXT)))
            assert got.dtype == np.float32
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5, err_msg=f"{framework}/{path} on {name}'s checkpoint")


@pytest.mark.parametrize("framework", LOADERS)
def test_loading_then_get_weights_returns_the_checkpoint(framework, checkpoints, loaded):
    arrays, _ = loaded[framework]
    for path in paths_of(framework):
        for name, file in checkpoints.items():
            for w, value in load_checkpoint(file).weights.items():
                np.testing.assert_array_equal(arrays[f"weights/{path}/{name}/{w}"], value, err_msg=f"{framework}/{path} {name} {w}")


@pytest.mark.parametrize("framework", LOADERS)
def test_greedy_samples_agree_across_frameworks(framework, checkpoints, loaded):
    _, texts = loaded[framework]
    for name, file in checkpoints.items():
        ckpt = load_checkpoint(file)
        expected = sample(make_model("numpy", ckpt.config, ckpt.weights), ckpt.vocab, 40, top_k=1, prime=PRIME, seed=0)
        for path in paths_of(framework):
            assert texts[f"sample/{path}/{name}"] == expected, f"{framework}/{path} on {name}'s checkpoint"


@pytest.mark.parametrize("framework", ["numpy", *LOADERS])
def test_a_model_of_another_size_refuses_the_weights(framework, checkpoints, loaded):
    for name, file in checkpoints.items():
        ckpt = load_checkpoint(file)
        if framework == "numpy":
            with pytest.raises(CheckpointError) as e:
                make_model("numpy", ckpt.config.replace(hidden_size=17), ckpt.weights)
            messages = [str(e.value)]
        else:
            messages = [loaded[framework][1][f"refused/{path}/{name}"] for path in paths_of(framework)]
        for message in messages:
            assert "'lstm.0.W_x'" in message and f"({len(set(TEXT))}, 68)" in message, message


def test_load_checkpoint_refuses_another_size_or_vocabulary(checkpoints):
    for file in checkpoints.values():
        config = load_checkpoint(file).config
        with pytest.raises(CheckpointError, match=r"hidden_size 16 \(asked for 32\)"):
            load_checkpoint(file, config=config.replace(hidden_size=32))
        with pytest.raises(CheckpointError, match=r"num_layers 2 \(asked for 1\)"):
            load_checkpoint(file, config=config.replace(num_layers=1))
        with pytest.raises(CheckpointError, match="differs from the given one"):
            load_checkpoint(file, vocab=Vocabulary(TEXT + "#"))


def test_resume_in_another_framework_refuses_another_corpus(checkpoints, tmp_path):
    other = tmp_path / "other.txt"
    other.write_text("zzz yyy xxx " * 200, encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "common.cli", "train", "--framework", "torch", "--corpus", str(other),
                           "--resume", str(checkpoints["keras"]), "--iters", "2", *TINY],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.startswith("rosetta: error: the vocabulary of ") and "differs from the given one" in proc.stderr
    assert "Traceback" not in proc.stderr
