"""The interchange checkpoint: one .safetensors file any implementation can load.

    save_checkpoint("run.safetensors", model.get_weights(), corpus.vocab, config, "torch")
    ckpt = load_checkpoint("run.safetensors", vocab=corpus.vocab)   # refuses what does not fit
    model = CharLSTM(ckpt.config, ckpt.weights)

Tensors carry the interchange names and shapes of common/weights.py, in config.dtype. The header
metadata (JSON strings) holds the ordered vocabulary, the config and the framework that wrote the
file, plus a format tag. Saving writes a temporary file in the same folder and renames it over
the target, so a failed save never leaves half a file nor damages the one already there.

A training checkpoint (common/training.py) also holds what exact resume needs, set apart from the
weights so that every reader loads it as a plain checkpoint:
    tensors   "optim.m/<weight>", "optim.v/<weight>", "optim.step" (Adam), "optim.sum/<weight>"
              (Adagrad), "state.h/<l>", "state.c/<l>" (the carried LSTM state, (B, H) each)
    metadata  "training": JSON {step, epoch, batch, corpus, rng, ...} (Checkpoint.run)
Checkpoint.training holds those tensors (empty for a weights-only file).
"""

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import safetensors.numpy
from safetensors import SafetensorError, safe_open

from common.config import Config
from common.corpus import Vocabulary, quote_chars
from common.errors import CheckpointError, RosettaError
from common.weights import check_weights, weight_shapes

FORMAT = "lstm-rosetta/1"
SIZES = ("vocab_size", "hidden_size", "num_layers")  # what a checkpoint fixes; the rest may change


@dataclass(eq=False)
class Checkpoint:
    weights: dict = field(repr=False)   # interchange name -> np.ndarray in config.dtype
    vocab: Vocabulary                   # the characters, in the order the model was trained with
    config: Config                      # the config it was saved with (or the one given to load)
    framework: str                      # "numpy", "torch" or "keras": who wrote it
    metadata: dict = field(repr=False)  # the raw header metadata (str -> str)
    training: dict = field(default_factory=dict, repr=False)  # "optim.*", "state.*" tensors: exact resume
    run: dict = None                    # the "training" metadata (step, epoch, ...), None if absent


TRAINING_PREFIXES = ("optim.", "state.")  # tensors that are not weights: the state a run resumes from


def training_state_shapes(config):
    """name -> shape of the training state a model of `config` resumes from (see the docstring)."""
    weights = weight_shapes(config)
    slots = {"sgd": (), "adagrad": ("sum",), "adam": ("m", "v")}[config.optimizer]
    shapes = {f"optim.{slot}/{name}": shape for slot in slots for name, shape in weights.items()}
    if config.optimizer == "adam":
        shapes["optim.step"] = ()  # updates applied so far: Adam's bias correction
    for l in range(config.num_layers):
        shapes[f"state.h/{l}"] = shapes[f"state.c/{l}"] = (config.batch_size, config.hidden_size)
    return shapes


def check_training_state(tensors, config):
    """Refuse, naming the tensor, a training state that does not fit `config`."""
    expected = training_state_shapes(config)
    for name in expected:
        if name not in tensors:
            raise CheckpointError(f"the training state lacks tensor {name!r}; resume from a checkpoint "
                                  f"written by this run's settings (optimizer {config.optimizer}).")
    for name in tensors:
        if name not in expected:
            raise CheckpointError(f"the training state holds tensor {name!r}, which an {config.optimizer} run "
                                  f"of this config has no place for; resume with the settings it was saved with.")
        if tuple(np.shape(tensors[name])) != expected[name]:
            raise CheckpointError(f"tensor {name!r} of the training state has shape {tuple(np.shape(tensors[name]))}, "
                                  f"but this config needs {expected[name]}; resume with the settings it was saved with.")


def save_checkpoint(path, weights, vocab, config, framework, training=None, run=None):
    """Write `weights` (interchange dict) with vocab, config and framework to `path`, atomically;
    training (dict of "optim.*"/"state.*" tensors) and run (a JSON-able dict) for exact resume."""
    path = Path(path)
    check_weights(weights, config, source="the weights to save")
    if len(vocab) != config.vocab_size:
        raise CheckpointError(
            f"the vocabulary has {len(vocab)} characters but config.vocab_size is {config.vocab_size}; "
            f"save with the vocabulary the model was built for.")
    tensors = {name: np.ascontiguousarray(weights[name], dtype=config.dtype) for name in weight_shapes(config)}
    metadata = {"format": FORMAT, "framework": str(framework),
                "vocab": json.dumps(vocab.chars), "config": json.dumps(config.to_dict())}
    if training:
        check_training_state(training, config)
        tensors.update({name: np.ascontiguousarray(t, dtype=np.int64 if name == "optim.step" else config.dtype)
                        for name, t in training.items()})
    if run is not None:
        metadata["training"] = json.dumps(run)
    data = safetensors.numpy.save(tensors, metadata=metadata)
    if path.is_dir():
        raise CheckpointError(f"the checkpoint path {path} is a folder; give a file name such as {path / 'model.safetensors'}.")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # 0o666: honour the umask
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise CheckpointError(f"cannot write the checkpoint {path} ({e.strerror or e}); choose a writable path.") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


# What a file that is not a checkpoint is, from its first bytes (then its suffix): the files a user
# of this project has at hand (a --log CSV, a corpus, a plot, an export) and a few common others
MAGIC = ((b"PK\x03\x04", "a zip archive"), (b"\x89HDF\r\n\x1a\n", "an HDF5 file (Keras 2 .h5 weights?)"),
         (b"\x89PNG", "a PNG image"), (b"\x93NUMPY", "a numpy .npy array"), (b"%PDF", "a PDF document"))
ZIP_SUFFIXES = {".keras": "a Keras .keras export (a zip archive)", ".pt2": "a PyTorch .pt2 export (a zip archive)",
                ".pt": "a PyTorch file (a zip archive)", ".pth": "a PyTorch file (a zip archive)",
                ".npz": "a numpy .npz archive"}
SUFFIXES = {".onnx": "an ONNX model", ".pkl": "a Python pickle", ".pickle": "a Python pickle"}
PEEK_BYTES = 4096


def file_kind(path):
    """What the file at `path` is, as a phrase ("a CSV file", "an empty file", ...), judged by its
    first bytes, then its suffix; "a safetensors file" for one that starts like one (a damaged
    checkpoint); None when neither tells."""
    from common.training import LOG_COLUMNS

    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(PEEK_BYTES)
    except OSError:
        return None
    suffix = path.suffix.lower()
    if not head:
        return "an empty file"
    if len(head) > 8 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000:
        return "a safetensors file"  # an 8-byte header length, then the JSON header
    for magic, kind in MAGIC:
        if head.startswith(magic):
            return ZIP_SUFFIXES.get(suffix, kind) if magic == b"PK\x03\x04" else kind
    if suffix in SUFFIXES:
        return SUFFIXES[suffix]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:
        if len(head) < PEEK_BYTES or e.start < len(head) - 3:  # not a character cut at the end of the peek
            return None
        text = head[:e.start].decode("utf-8")
    if "\x00" in text:
        return None
    first = text.lstrip("\ufeff").split("\n", 1)[0]
    if first.strip().startswith(("{", "[")):
        return "a JSON file"
    if first.strip() == ",".join(LOG_COLUMNS):
        return "a rosetta training log (CSV)"
    if "," in first or suffix == ".csv":
        return "a CSV file"
    return "a text file"


def _read(path):
    """(tensors, metadata) of a safetensors file, or a CheckpointError saying it is not one: what it
    is when its first bytes tell (a CSV log, an export, ...), else that it may be damaged."""
    try:
        with safe_open(path, framework="np") as f:
            metadata = f.metadata() or {}
            tensors = {name: np.array(f.get_tensor(name)) for name in f.keys()}  # copies: writable, no mmap
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as e:
        kind = file_kind(path)
        if kind not in (None, "a safetensors file"):
            raise CheckpointError(f"{path} is {kind}, not a checkpoint: give the .safetensors file that "
                                  f"`rosetta train --save` wrote.") from None
        raise CheckpointError(
            f"{path} is not a readable safetensors checkpoint ({e}); it may be truncated or corrupt: "
            f"save it again or use another file.") from None
    return tensors, metadata


def _metadata(path, metadata):
    """(vocab, config, framework) from the header metadata, refusing what is missing or malformed."""
    missing = [key for key in ("format", "vocab", "config", "framework") if key not in metadata]
    if missing:
        raise CheckpointError(
            f"{path} has no {missing[0]!r} in its metadata, so it was not written by save_checkpoint; "
            f"convert it with save_checkpoint (vocab, config, framework) or use an lstm-rosetta checkpoint.")
    if metadata["format"] != FORMAT:
        raise CheckpointError(
            f"{path} has format {metadata['format']!r}, but this version reads {FORMAT!r}; "
            f"save it again with this version of lstm-rosetta.")
    try:
        chars = json.loads(metadata["vocab"])
        config = Config.from_dict(json.loads(metadata["config"]))
    except (ValueError, TypeError, RosettaError) as e:
        raise CheckpointError(f"{path} has unreadable vocab or config metadata ({e}); save the checkpoint again.") from None
    if not isinstance(chars, str) or not chars or chars != "".join(sorted(set(chars))):
        raise CheckpointError(
            f"the vocabulary in {path} is not a non-empty string of sorted, distinct characters, so its "
            f"ids cannot be trusted; save the checkpoint again with save_checkpoint.")
    vocab = Vocabulary(chars)
    if len(vocab) != config.vocab_size:
        raise CheckpointError(
            f"{path} holds {len(vocab)} vocabulary characters but a config with vocab_size "
            f"{config.vocab_size}; save the checkpoint again.")
    return vocab, config, metadata["framework"]


def _vocab_difference(saved, given):
    only_saved = [c for c in saved.chars if c not in given.chars]
    only_given = [c for c in given.chars if c not in saved.chars]
    parts = []
    if only_saved:
        parts.append(f"{len(only_saved)} only in the checkpoint ({quote_chars(only_saved, 10)})")
    if only_given:
        parts.append(f"{len(only_given)} only in the given vocabulary ({quote_chars(only_given, 10)})")
    return " and ".join(parts)


def load_checkpoint(path, config=None, vocab=None):
    """A Checkpoint from `path`, refused (CheckpointError) unless everything in it fits.

    config: if given, its sizes (vocab_size, hidden_size, num_layers) must match the file's; the
    returned Checkpoint carries this config (its learning rate, optimizer, ...) and the weights
    cast to its dtype. vocab: if given, it must equal the saved vocabulary.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}; check the path, or train a model and save one there first.")
    if path.is_dir():
        raise CheckpointError(f"the checkpoint path {path} is a folder; pass the .safetensors file inside it.")
    tensors, metadata = _read(path)
    saved_vocab, saved_config, framework = _metadata(path, metadata)
    training = {name: tensors.pop(name) for name in list(tensors) if name.startswith(TRAINING_PREFIXES)}
    if "optim.step" in training and training["optim.step"].size == 1:
        training["optim.step"] = training["optim.step"].reshape(())  # safe_open reads a scalar as (1,)
    try:
        run = json.loads(metadata["training"]) if "training" in metadata else None
    except ValueError:
        raise CheckpointError(f"{path} has unreadable training metadata; save the checkpoint again.") from None
    check_weights(tensors, saved_config, source=f"the tensors of {path}")
    for name, w in tensors.items():
        if w.dtype != np.dtype(saved_config.dtype):
            raise CheckpointError(
                f"tensor {name!r} in {path} is {w.dtype}, but its config says {saved_config.dtype}; "
                f"save the checkpoint again with save_checkpoint.")
    if vocab is not None and vocab != saved_vocab:
        raise CheckpointError(
            f"the vocabulary of {path} ({len(saved_vocab)} characters) differs from the given one "
            f"({len(vocab)}): {_vocab_difference(saved_vocab, vocab)}; use the same corpus (and "
            f"reduced option) the model was trained on, or the checkpoint's own vocabulary.")
    if config is not None:
        differ = [f"{k} {getattr(saved_config, k)} (asked for {getattr(config, k)})"
                  for k in SIZES if getattr(config, k) != getattr(saved_config, k)]
        if differ:
            raise CheckpointError(
                f"{path} holds a model with {', '.join(differ)}; drop the size options to use the "
                f"checkpoint's own, or load a checkpoint of that size.")
        tensors = {name: w.astype(config.dtype) for name, w in tensors.items()}
    else:
        config = saved_config
    weights = {name: tensors[name] for name in weight_shapes(config)}  # the interchange order
    return Checkpoint(weights, saved_vocab, config, framework, dict(metadata), training, run)


def peek_metadata(path):
    """The header metadata of an lstm-rosetta checkpoint at `path` (nothing else is read), or a
    CheckpointError naming the file and what it is instead (a clause for the caller's sentence)."""
    try:
        with safe_open(path, framework="np") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError, KeyError, TypeError):
        kind = file_kind(path)
        kind = f" ({kind})" if kind not in (None, "a safetensors file") else ""
        raise CheckpointError(f"{path}{kind}, which is not a checkpoint") from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path}, a safetensors file that lstm-rosetta did not write") from None
    return metadata
