"""`rosetta import` (issue 26): character LSTMs written in plain Keras and PyTorch (tests/foreign_models.py,
which does not import this project), trained a few steps and saved as users save them (.keras, a
Keras 2 style .h5, torch.save(state_dict) in float32 and float64, torch.onnx.export with both
exporters), are imported and must compute the source's own predictions over a text in every
framework and path: numpy here, torch and Keras on TensorFlow, JAX and torch each in one process
of its own. float32 within 1e-5, float64 within 1e-12; a softmax head is compared in log space
(the checkpoint holds the logits before it). Each refusal of the issue is a test of its own, and
refuses before any file is written. The imported checkpoint also samples, evaluates, trains on
(--resume, weights only) and exports in every framework, and this project's own ONNX export
imports back to the same weights.
"""

import ast
import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common.checkpoint import load_checkpoint
from common.cli import main
from common.errors import ConfigError
from common.frameworks import make_model, paths_on
from common.importing import read_vocab

ROOT = Path(__file__).resolve().parents[1]
FOREIGN = ROOT / "tests" / "foreign_models.py"
SOURCES = {"seq": "seq.keras", "fun": "fun.h5", "last": "last.keras", "emb": "emb.pt", "f64": "f64.pt",
           "onnx_dynamo": "onnx_dynamo.onnx", "onnx_script": "onnx_script.onnx"}
SOFTMAX = {"fun", "last"}  # heads with a softmax: the source predicts probabilities
LOADERS = ["torch", "keras@tensorflow", "keras@jax", "keras@torch"]
TOLERANCE = {"float32": 1e-5, "float64": 1e-12}
# the paths that compute sigmoid gates only (torch.nn.LSTM; numpy's tuned gate arithmetic) refuse
# the hard_sigmoid model "fun" with a message; every other path runs it
SIGMOID_ONLY = {("numpy", "fast"), ("torch", "layer")}
QUIET = {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore"}


def spawn(args, env=None):
    return subprocess.Popen([sys.executable, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT, env={**os.environ, **QUIET, **(env or {})})


def finish(proc, what, timeout=900):
    stdout, stderr = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"{what} failed:\n{stderr[-3000:]}"
    return stdout


def cli(*args):
    """(status, stdout, stderr) of rosetta ARGS run in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(a) for a in args])
    return status, out.getvalue(), err.getvalue()


# Runs rosetta import for several sources in one process (keras and torch imported once)
IMPORTER = """
import contextlib, io, json, sys
sys.path.insert(0, sys.argv[1])
from common.cli import main
results = {}
for name, argv in json.loads(sys.argv[2]).items():
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        results[name] = [main(argv), err.getvalue()]
print(json.dumps(results))
"""


def import_all(cases, env=None):
    """{name: (status, stderr)} of `rosetta import` for each {name: argv} in one process."""
    proc = spawn(["-c", IMPORTER, ROOT, json.dumps(cases)], env)
    return {k: tuple(v) for k, v in json.loads(finish(proc, "rosetta import").splitlines()[-1]).items()}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """The folder of the foreign models, their predictions-*.npz, vocab.json and text.txt."""
    out = tmp_path_factory.mktemp("foreign")
    procs = {kind: spawn([FOREIGN, kind, out], {"KERAS_BACKEND": "tensorflow"}) for kind in ("keras", "torch")}
    for kind, proc in procs.items():
        finish(proc, f"building the {kind} models")
    return out


@pytest.fixture(scope="module")
def imported(sources):
    """{name: checkpoint path} of every source imported with its vocab.json."""
    cases = {name: ["import", str(sources / file), "--vocab", str(sources / "vocab.json"),
                    "--out", str(sources / f"imported-{name}.safetensors")] for name, file in SOURCES.items()}
    for name, (status, err) in import_all(cases, {"KERAS_BACKEND": "jax"}).items():
        assert status == 0, f"importing {name}: {err}"
    return {name: sources / f"imported-{name}.safetensors" for name in SOURCES}


@pytest.fixture(scope="module")
def inputs(sources, imported):
    """{name: (x in the checkpoint's ids, the source's predictions in the checkpoint's column order)}."""
    chars = json.loads((sources / "vocab.json").read_text(encoding="utf-8"))
    with np.load(sources / "predictions-keras.npz") as k, np.load(sources / "predictions-torch.npz") as t:
        preds = {**{n: k[n] for n in k.files}, **{n: t[n] for n in t.files}}
    out = {}
    for name, file in imported.items():
        vocab = load_checkpoint(file).vocab.chars
        to_sorted = np.array([vocab.index(c) for c in chars])      # source id -> checkpoint id
        from_sorted = np.array([chars.index(c) for c in vocab])    # checkpoint column -> source column
        out[name] = (to_sorted[preds[f"{name}/x"]], preds[name][..., from_sorted])
    np.savez(sources / "inputs.npz", **{name: x for name, (x, _) in out.items()})
    return out


# In each framework: every checkpoint's logits on every path, then the command line on one of them
LOADER = """
import contextlib, io, json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from common.checkpoint import load_checkpoint
from common.cli import main
from common.errors import ConfigError
from common.frameworks import make_model, paths_on
framework, backend, folder = sys.argv[2], sys.argv[3], sys.argv[4]
checkpoints, exports = json.loads(sys.argv[5]), json.loads(sys.argv[6])
with np.load(f"{folder}/inputs.npz") as f:
    inputs = {k: f[k] for k in f.files}
arrays, texts = {}, {}
for path in paths_on(framework):
    for name, file in checkpoints.items():
        ckpt = load_checkpoint(file)
        try:
            model = make_model(framework, ckpt.config, ckpt.weights, path=path)
        except ConfigError as e:  # a path without hard_sigmoid gates says so
            texts[f"refused/{path}/{name}"] = [2, "", str(e)]
            continue
        arrays[f"{path}/{name}"] = np.asarray(model.forward(inputs[name])[0])
tag, ckpt, corpus = framework + backend, checkpoints["seq"], f"{folder}/corpus.txt"
model = ["--framework", framework, "--threads", "1"] + (["--backend", backend] if backend else [])
commands = {"sample": ["sample", ckpt, *model, "--length", "30", "--prime", "the ", "--seed", "1"],
            "eval": ["eval", ckpt, *model, "--corpus", corpus, "--streams", "2"],
            "train": ["train", *model, "--corpus", corpus, "--resume", ckpt, "--iters", "3", "--batch-size", "2",
                      "--seq-length", "8", "--val-every", "0", "--sample-every", "0",
                      "--save", f"{folder}/resumed-{tag}.safetensors"]}
for to, suffix in exports.items():
    commands[f"export-{to}"] = ["export", ckpt, "--to", to, f"{folder}/exported-{tag}{suffix}"]
for name, argv in commands.items():
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    texts[name] = [status, out.getvalue(), err.getvalue()]
np.savez(f"{folder}/loaded-{tag}.npz", **arrays)
print(json.dumps(texts))
"""
EXPORTS = {"torch": {"torch": ".pt2", "onnx": ".onnx"}, "keras": {"keras": ".keras"}}


@pytest.fixture(scope="module")
def loaded(sources, imported, inputs):
    """{loader: (arrays "path/name" -> logits, {command: [status, stdout, stderr]})}."""
    names = json.dumps({k: str(v) for k, v in imported.items()})
    procs = {}
    for loader in LOADERS:
        framework, _, backend = loader.partition("@")
        procs[loader] = spawn(["-c", LOADER, ROOT, framework, backend, sources, names, json.dumps(EXPORTS[framework])],
                              {"KERAS_BACKEND": backend} if backend else None)
    results = {}
    for loader, proc in procs.items():
        texts = json.loads(finish(proc, f"loading in {loader}").splitlines()[-1])
        framework, _, backend = loader.partition("@")
        with np.load(sources / f"loaded-{framework}{backend}.npz") as f:
            results[loader] = ({k: f[k] for k in f.files}, texts)
    return results


def difference(name, logits, predictions):
    """Max |logits - the source's| (log probabilities for a softmax head, last position for target last)."""
    z = np.asarray(logits, dtype=np.float64)
    if name == "last":
        z = z[:, -1]
    p = np.asarray(predictions, dtype=np.float64)
    if name in SOFTMAX:
        z = z - z.max(axis=-1, keepdims=True)
        z, p = z - np.log(np.exp(z).sum(axis=-1, keepdims=True)), np.log(p)
    return float(np.abs(z - p).max())


# ---------------------------------------------------------------------------------------------
# The foreign models are foreign

def test_the_foreign_models_import_nothing_of_this_project():
    tree = ast.parse(FOREIGN.read_text())
    modules = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert modules <= {"json", "sys", "pathlib", "numpy", "keras", "torch", "onnx"}, modules


# ---------------------------------------------------------------------------------------------
# Agreement with the source's own predictions, in every framework and path

@pytest.mark.parametrize("name", sorted(SOURCES))
def test_numpy_computes_the_source_predictions(name, imported, inputs):
    ckpt = load_checkpoint(imported[name])
    x, predictions = inputs[name]
    assert ckpt.config.dtype == ("float64" if name == "f64" else "float32")
    for path in paths_on("numpy"):
        if name == "fun" and ("numpy", path) in SIGMOID_ONLY:
            with pytest.raises(ConfigError, match="hard_sigmoid"):
                make_model("numpy", ckpt.config, ckpt.weights, path=path)
            continue
        logits = make_model("numpy", ckpt.config, ckpt.weights, path=path).forward(x)[0]
        figure = difference(name, logits, predictions)
        assert figure < TOLERANCE[ckpt.config.dtype], (name, path, figure)
        print(f"\nmax |logit difference| numpy: {path}/{name} {figure:.1e}", end="")


@pytest.mark.parametrize("loader", LOADERS)
def test_every_framework_computes_the_source_predictions(loader, imported, inputs, loaded):
    arrays, texts = loaded[loader]
    framework = loader.partition("@")[0]
    figures = {}
    for path in paths_on(framework, loader.partition("@")[2] or None):
        for name in SOURCES:
            if name == "fun" and (framework, path) in SIGMOID_ONLY:
                assert "hard_sigmoid" in texts[f"refused/{path}/{name}"][2]
                continue
            dtype = load_checkpoint(imported[name]).config.dtype
            figures[f"{path}/{name}"] = difference(name, arrays[f"{path}/{name}"], inputs[name][1])
            assert figures[f"{path}/{name}"] < TOLERANCE[dtype], (loader, path, name, figures[f"{path}/{name}"])
    print(f"\nmax |logit difference| {loader}: " + ", ".join(f"{k} {v:.1e}" for k, v in figures.items()))


def test_the_imported_model_is_the_source_model_not_a_near_one(sources, inputs, imported):
    """The tolerance could hide a wrong gate order or vocabulary permutation: swapping two gates'
    blocks or two characters' columns must move the logits far beyond it."""
    ckpt = load_checkpoint(imported["emb"])
    x, predictions = inputs["emb"]
    H = ckpt.config.hidden_size
    swapped = dict(ckpt.weights)
    swapped["lstm.0.W_x"] = np.concatenate([ckpt.weights["lstm.0.W_x"][:, H:2 * H], ckpt.weights["lstm.0.W_x"][:, :H],
                                            ckpt.weights["lstm.0.W_x"][:, 2 * H:]], axis=1)  # f and i exchanged
    assert difference("emb", make_model("numpy", ckpt.config, swapped).forward(x)[0], predictions) > 1e-3
    assert difference("emb", make_model("numpy", ckpt.config, ckpt.weights).forward(x)[0],
                      predictions[..., ::-1]) > 1e-2


def test_an_unsorted_vocabulary_is_permuted_to_the_sorted_checkpoint(sources, imported):
    chars = read_vocab(sources / "vocab.json")
    assert chars != sorted(chars)  # first appearance: the permutation is exercised
    assert load_checkpoint(imported["seq"]).vocab.chars == "".join(sorted(chars))


def test_a_many_to_one_source_imports_as_target_last(imported):
    config = load_checkpoint(imported["last"]).config
    assert (config.target, config.seq_length, config.recurrent_activation) == ("last", 10, "sigmoid")
    assert load_checkpoint(imported["fun"]).config.recurrent_activation == "hard_sigmoid"


# ---------------------------------------------------------------------------------------------
# The imported checkpoint works everywhere a trained one does

def test_numpy_samples_evaluates_trains_and_shows_the_imported_checkpoint(sources, imported):
    ckpt = imported["seq"]
    status, out, err = cli("info", ckpt)
    assert status == 0 and "imported from keras" in out and "lstm.1.W_h" in out, err
    status, out, err = cli("sample", ckpt, "--length", 30, "--prime", "the ", "--seed", 1, "--threads", 1)
    assert status == 0 and out.startswith("the ") and len(out.rstrip("\n")) >= 34, err
    status, out, err = cli("eval", ckpt, "--corpus", sources / "corpus.txt", "--streams", 2, "--threads", 1)
    assert status == 0 and "validation loss" in out, err
    resumed = sources / "resumed-numpy.safetensors"
    status, out, err = cli("train", "--corpus", sources / "corpus.txt", "--resume", ckpt, "--iters", 3, "--batch-size", 2,
                           "--seq-length", 8, "--val-every", 0, "--sample-every", 0, "--save", resumed, "--threads", 1)
    assert status == 0 and "weights only (the checkpoint holds no training state)" in out, err
    assert load_checkpoint(resumed).config.hidden_size == load_checkpoint(ckpt).config.hidden_size


@pytest.mark.parametrize("loader", LOADERS)
def test_every_framework_samples_evaluates_trains_and_exports_it(loader, sources, imported, loaded):
    _, texts = loaded[loader]
    for command, (status, out, err) in texts.items():
        assert status == 0 or command.startswith("refused/"), f"{loader} {command}: {err[-2000:]}"
    assert texts["sample"][1].startswith("the ")
    assert "validation loss" in texts["eval"][1]
    assert "weights only" in texts["train"][1] and "step 3/3" in texts["train"][1]
    framework, _, backend = loader.partition("@")
    resumed = load_checkpoint(sources / f"resumed-{framework}{backend}.safetensors")
    start = load_checkpoint(imported["seq"])
    assert any(not np.array_equal(resumed.weights[k], start.weights[k]) for k in start.weights)  # it trained
    for to, suffix in EXPORTS[framework].items():
        assert (sources / f"exported-{framework}{backend}{suffix}").stat().st_size > 0


def test_this_projects_onnx_export_imports_back_to_the_same_weights(sources, imported, loaded):
    out = sources / "back.safetensors"
    status, stdout, err = cli("import", sources / "exported-torch.onnx", "--vocab", sources / "text.txt", "--out", out)
    assert status == 0, err
    before, after = load_checkpoint(imported["seq"]), load_checkpoint(out)
    assert after.vocab == before.vocab
    for name, w in before.weights.items():
        np.testing.assert_allclose(after.weights[name], w, rtol=0, atol=1e-6, err_msg=name)


# ---------------------------------------------------------------------------------------------
# Refusals: one sentence naming the layer or setting, and no file written

REFUSALS = {  # case: (source file, the words the sentence must hold)
    "gru": ("gru.keras", "layer 'gru'", "is a GRU"),
    "torch_gru": ("torch_gru.pt", "recurrent layer 0", "is a GRU (3 gates)"),
    "simple_rnn": ("simple_rnn.keras", "layer 'simple_rnn'", "is a SimpleRNN"),
    "bidirectional": ("bidirectional.keras", "layer 'bidirectional'", "Bidirectional"),
    "torch_bidirectional": ("torch_bidirectional.pt", "'rnn.weight_ih_l0_reverse'", "bidirectional"),
    "proj_size": ("torch_proj.pt", "'rnn.weight_hr_l0'", "proj_size"),
    "peepholes": ("peephole.onnx", "LSTM node", "peephole weights"),
    "no_bias": ("no_bias.keras", "LSTM 'lstm", "use_bias=False"),
    "torch_no_bias": ("torch_no_bias.pt", "rnn.bias_ih_l0", "bias=False"),
    "relu_cell": ("relu_cell.keras", "LSTM 'lstm", "relu cell activation"),
    "mc_dropout": ("mc_dropout.keras", "training=True", "dropout 0.3"),
    "two_heads": ("two_heads.keras", "2 outputs", "two heads"),
    "torch_two_heads": ("torch_two_heads.pt", "'fc.weight', 'aux.weight'", "two heads"),
    "wrong_vocab": ("good.keras", "has 15 characters", "16"),
}


@pytest.fixture(scope="module")
def refusals(tmp_path_factory):
    """{case: (status, stderr, output written?)} of rosetta import for every REFUSALS source."""
    out = tmp_path_factory.mktemp("refusals")
    finish(spawn([FOREIGN, "refusals", out], {"KERAS_BACKEND": "jax"}), "building the refused models")
    chars = json.loads((out / "vocab.json").read_text(encoding="utf-8"))
    (out / "short.json").write_text(json.dumps(chars[:-1]), encoding="utf-8")
    cases = {case: ["import", str(out / file), "--vocab", str(out / ("short.json" if case == "wrong_vocab" else "vocab.json")),
                    "--out", str(out / f"{case}.safetensors")] for case, (file, *_) in REFUSALS.items()}
    results = import_all(cases, {"KERAS_BACKEND": "jax"})
    return {case: (*results[case], (out / f"{case}.safetensors").exists() or any(out.glob(f".{case}*")))
            for case in REFUSALS}


def refused(refusals, case):
    status, err, written = refusals[case]
    _, *words = REFUSALS[case]
    line = err.strip()
    assert status == 2 and line.startswith("rosetta: error: ") and "\n" not in line, err
    assert all(w in line for w in words), line
    assert not written


def test_a_gru_is_refused(refusals):
    refused(refusals, "gru")
    refused(refusals, "torch_gru")


def test_a_simple_rnn_is_refused(refusals):
    refused(refusals, "simple_rnn")


def test_a_bidirectional_lstm_is_refused(refusals):
    refused(refusals, "bidirectional")
    refused(refusals, "torch_bidirectional")


def test_a_projected_lstm_is_refused(refusals):
    refused(refusals, "proj_size")


def test_peepholes_are_refused(refusals):
    refused(refusals, "peepholes")


def test_an_lstm_without_bias_is_refused(refusals):
    refused(refusals, "no_bias")
    refused(refusals, "torch_no_bias")


def test_a_non_tanh_cell_activation_is_refused(refusals):
    refused(refusals, "relu_cell")


def test_dropout_on_in_inference_is_refused(refusals):
    refused(refusals, "mc_dropout")


def test_two_heads_are_refused(refusals):
    refused(refusals, "two_heads")
    refused(refusals, "torch_two_heads")


def test_a_vocabulary_of_the_wrong_size_is_refused(refusals):
    refused(refusals, "wrong_vocab")


def test_bad_command_lines_are_refused_before_reading(tmp_path):
    (tmp_path / "m.keras").write_bytes(b"")
    (tmp_path / "m.txt").write_text("x")
    for args, words in [((tmp_path / "none.keras", "--vocab", "x", "--out", tmp_path / "o.safetensors"), "no model file"),
                        ((tmp_path / "m.txt", "--vocab", "x", "--out", tmp_path / "o.safetensors"), "not a .keras"),
                        ((tmp_path / "m.keras", "--vocab", "x", "--out", tmp_path / "o.pt"), "must be a .safetensors"),
                        ((tmp_path / "m.keras", "--vocab", "x", "--out", tmp_path / "o.safetensors", "--map", "a=b"),
                         "is not NAME=TARGET")]:
        status, _, err = cli("import", *args)
        assert status == 2 and words in err and "Traceback" not in err, err
    assert not (tmp_path / "o.safetensors").exists()


# ---------------------------------------------------------------------------------------------
# --map: names a state_dict's shapes and suffixes cannot tell apart (framework-free, numpy arrays)

def test_map_joins_two_lstm_modules_into_one_stack_and_drops_a_tensor():
    from common.importing import SourceError, state_dict_source

    rng = np.random.default_rng(0)
    V, H = 5, 3
    w = lambda *shape: rng.standard_normal(shape)
    layer = lambda name, n_in: {f"{name}.weight_ih_l0": w(4 * H, n_in), f"{name}.weight_hh_l0": w(4 * H, H),
                                f"{name}.bias_ih_l0": w(4 * H), f"{name}.bias_hh_l0": w(4 * H)}
    tensors = {**layer("first", V), **layer("second", H), "out.weight": w(V, H), "out.bias": w(V),
               "steps": np.ones(1)}
    with pytest.raises(SourceError, match="under 2 prefixes"):
        state_dict_source(tensors, "m.pt", {"steps": "ignore"})
    mapping = {f"second.{kind}_l0": f"lstm.{kind}_l1" for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    mapping.update({f"first.{kind}_l0": f"lstm.{kind}_l0" for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
    with pytest.raises(SourceError, match="'steps'.*--map steps=ignore"):
        state_dict_source(tensors, "m.pt", mapping)
    src = state_dict_source(tensors, "m.pt", {**mapping, "steps": "ignore"})
    first, second, head = src.layers
    np.testing.assert_array_equal(second.W_x, tensors["second.weight_ih_l0"].T)
    np.testing.assert_array_equal(first.b, tensors["first.bias_ih_l0"] + tensors["first.bias_hh_l0"])
    np.testing.assert_array_equal(head.W, tensors["out.weight"].T)
