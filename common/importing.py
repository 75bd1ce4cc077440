"""`rosetta import`: a character LSTM trained by someone else's Keras or PyTorch code, as a checkpoint.

    import_model("m.keras", "vocab.json", "m.safetensors")     # Keras 3 .keras or Keras 2 .h5
    import_model("m.pt", "corpus.txt", "m.safetensors")        # torch.save(model.state_dict())
    import_model("m.onnx", "tinyshakespeare", "m.safetensors") # LSTM nodes, or this project's export

A reader turns the source file into a Source: a list of layers in the neutral layout below, in
order. The readers live with their framework (keras_impl/importer.py, torch_impl/importer.py) or
import only onnx (common/onnx_import.py), reached by module name as common/export.py reaches its
builders; this module is numpy only and does the conversion:

    Embedding  E (V, D)                          folded into the first LSTM: W_x = E @ W_x (V, 4H)
    LSTM       W_x (in, 4H), W_h (H, 4H), b (4H,)  gates i, f, g, o (Keras' order; see the converters)
    Head       W (H, V), b (V,)                  the logits; a softmax after it is left out

The vocabulary comes in the model's index order (a JSON list, a text file of distinct characters,
or a corpus' sorted characters); checkpoints keep their characters sorted (common/corpus.py), so
the rows of the one-hot kernel and the head's columns are permuted to that order: the same model.
What is not the same model (a GRU, a bidirectional or projected LSTM, peepholes, a missing bias, a
non-tanh cell activation, dropout that stays on in inference, two heads, a vocabulary of another
size) is refused in one sentence naming the layer, before any file is written.
"""

import importlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.errors import ConfigError, RosettaError

# The reader of each source suffix, reached by module name (common/ imports no framework)
READERS = {".keras": "keras_impl.importer", ".h5": "keras_impl.importer", ".hdf5": "keras_impl.importer",
           ".pt": "torch_impl.importer", ".pth": "torch_impl.importer", ".bin": "torch_impl.importer",
           ".onnx": "common.onnx_import"}
KINDS = {"keras_impl.importer": "keras", "torch_impl.importer": "torch", "common.onnx_import": "onnx"}
# The canonical nn.Module names that --map renames a state_dict's tensors to ("ignore" drops one)
MAP_TARGETS = "embedding.weight, lstm.weight_ih_l{k}, lstm.weight_hh_l{k}, lstm.bias_ih_l{k}, " \
              "lstm.bias_hh_l{k}, head.weight, head.bias or ignore"


class SourceError(RosettaError):
    """A source model that is not the interchange model, or a file that cannot be read as one."""


@dataclass
class Embedding:
    name: str
    E: np.ndarray          # (V, D)


@dataclass
class LSTM:
    name: str
    W_x: np.ndarray        # (in, 4H), gates i, f, g, o
    W_h: np.ndarray        # (H, 4H)
    b: np.ndarray          # (4H,)
    recurrent_activation: str = "sigmoid"  # or "hard_sigmoid" (Keras 3's relu6(x + 3) / 6)


@dataclass
class Head:
    name: str
    W: np.ndarray          # (H, V)
    b: np.ndarray          # (V,)
    softmax: bool = False  # the source applies a softmax after it; the checkpoint keeps the logits


@dataclass
class Source:
    layers: list                          # Embedding?, LSTM+, Head, in order
    target: str = "all"                   # "last": the source predicts from the last position only
    seq_length: int = None                # the source's fixed input length, if it has one
    notes: list = field(default_factory=list)  # what the user should know (a softmax left out, ...)


# ---------------------------------------------------------------------------------------------
# The three layouts of an LSTM's weights, to the interchange one

def keras_lstm(kernel, recurrent_kernel, bias):
    """Keras: kernel (in, 4H), recurrent_kernel (H, 4H), bias (4H,), gates i, f, c, o: already ours."""
    return np.asarray(kernel), np.asarray(recurrent_kernel), np.asarray(bias)


def torch_lstm(weight_ih, weight_hh, bias_ih, bias_hh):
    """PyTorch: weight_ih (4H, in), weight_hh (4H, H), two biases (4H,), gates i, f, g, o."""
    return np.asarray(weight_ih).T, np.asarray(weight_hh).T, np.asarray(bias_ih) + np.asarray(bias_hh)


ONNX_GATES = [0, 2, 3, 1]  # ONNX stacks i, o, f, c: these blocks, in this order, are i, f, g, o


def onnx_lstm(W, R, B):
    """ONNX (one direction): W (1, 4H, in), R (1, 4H, H), B (1, 8H) = [Wb, Rb], gates i, o, f, c."""
    def reorder(m):  # (4H, ...) -> the blocks in the order i, f, g, o
        return np.concatenate([m[k * H:(k + 1) * H] for k in ONNX_GATES])
    W, R, B = np.asarray(W)[0], np.asarray(R)[0], np.asarray(B)[0]
    H = R.shape[1]
    return reorder(W).T, reorder(R).T, reorder(B[:4 * H] + B[4 * H:])


# ---------------------------------------------------------------------------------------------
# A PyTorch state_dict's names (framework-free: dict name -> np.ndarray), also ONNX initializers'

LSTM_NAME = re.compile(r"^(?P<prefix>.*?)(?P<kind>weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(?P<layer>\d+)(?P<reverse>_reverse)?$")


def apply_map(tensors, mapping, source):
    """tensors renamed by --map pairs {source name: canonical name or "ignore"}."""
    tensors = dict(tensors)
    for old, new in (mapping or {}).items():
        if old not in tensors:
            raise SourceError(f"--map names {old!r}, which {source} does not hold; its tensors are "
                              f"{', '.join(sorted(tensors))}.")
        value = tensors.pop(old)
        if new != "ignore":
            if new in tensors:
                raise SourceError(f"--map {old}={new} clashes with the tensor {new!r} already in {source}; "
                                  f"map that one too, or to ignore.")
            tensors[new] = value
    return tensors


def state_dict_source(tensors, source, mapping=None):
    """A Source from a state_dict of an optional nn.Embedding, one nn.LSTM and an nn.Linear head,
    told apart by their suffixes (weight_ih_l{k}, ...) and shapes; --map renames what cannot be."""
    tensors = apply_map(tensors, mapping, source)
    for name, t in tensors.items():
        if not np.issubdtype(t.dtype, np.floating):
            raise SourceError(f"{source} holds {name!r} ({t.dtype}), which is not a weight of an LSTM model; "
                              f"drop it with --map {name}=ignore.")
    groups = {}
    for name in tensors:
        m = LSTM_NAME.match(name)
        if m:
            if m["reverse"]:
                raise SourceError(f"{source} holds {name!r}: its LSTM is bidirectional, which reads the text "
                                  f"backwards too; import a one-directional LSTM (bidirectional=False).")
            if m["kind"] == "weight_hr":
                raise SourceError(f"{source} holds {name!r}: its LSTM projects the hidden state (proj_size), "
                                  f"which the interchange LSTM does not; import an LSTM with proj_size=0.")
            groups.setdefault(m["prefix"], {})[(m["kind"], int(m["layer"]))] = name
    if not groups:
        raise SourceError(f"{source} holds no LSTM weights (names ending in weight_ih_l0, weight_hh_l0, ...); "
                          f"save the state_dict of a model with an nn.LSTM, or rename its tensors with --map.")
    if len(groups) > 1:
        raise SourceError(f"{source} holds LSTM weights under {len(groups)} prefixes ({', '.join(repr(p) for p in groups)}), "
                          f"so their order is not known; rename them to one stack with --map NAME=lstm.weight_ih_l1 etc.")
    prefix, names = next(iter(groups.items()))
    layers, L = [], 1 + max(k for _, k in names)
    for k in range(L):
        if ("weight_ih", k) not in names or ("weight_hh", k) not in names:
            raise SourceError(f"{source} lacks {prefix}weight_ih_l{k} or {prefix}weight_hh_l{k} of LSTM layer {k}; "
                              f"save the whole state_dict (torch.save(model.state_dict())).")
        w_ih, w_hh = tensors.pop(names["weight_ih", k]), tensors.pop(names["weight_hh", k])
        gates = w_hh.shape[0] // max(w_hh.shape[1], 1)
        if w_hh.ndim != 2 or gates != 4 or w_hh.shape[0] != 4 * w_hh.shape[1]:
            kind = {3: "a GRU (3 gates)", 1: "a plain RNN (SimpleRNN, 1 gate)"}.get(gates, f"not an LSTM ({w_hh.shape})")
            raise SourceError(f"recurrent layer {k} of {source} is {kind}: {prefix}weight_hh_l{k} has shape "
                              f"{tuple(w_hh.shape)}, where an LSTM has (4H, H); import an nn.LSTM.")
        if ("bias_ih", k) not in names or ("bias_hh", k) not in names:
            raise SourceError(f"LSTM layer {k} of {source} has no {prefix}bias_ih_l{k} (nn.LSTM(bias=False), use_bias=False): "
                              f"the interchange LSTM always has a bias; import an LSTM with bias=True.")
        W_x, W_h, b = torch_lstm(w_ih, w_hh, tensors.pop(names["bias_ih", k]), tensors.pop(names["bias_hh", k]))
        layers.append(LSTM(f"{prefix}l{k}", W_x, W_h, b))
    H, in_0 = layers[0].W_h.shape[0], layers[0].W_x.shape[0]
    heads = _pick(tensors, "head.weight", lambda n, t: t.ndim == 2 and t.shape[1] == H
                  and n.endswith("weight") and _bias_of(n) in tensors)
    if len(heads) != 1:
        if heads:
            raise SourceError(f"{source} has two heads ({', '.join(repr(n) for n in heads)}), (V, H) weights with a "
                              f"bias each; keep one with --map NAME=ignore for the other.")
        bare = [n for n, t in tensors.items() if t.ndim == 2 and t.shape[1] == H]
        raise SourceError(f"{source} has no nn.Linear head with a bias after its LSTM"
                          + (f" ({bare[0]!r} has no bias: Linear(bias=False), use_bias=False)" if bare else "")
                          + f"; import a model whose head is nn.Linear({H}, V) with bias=True.")
    W = tensors.pop(heads[0])
    head = Head(heads[0].rsplit(".", 1)[0] or heads[0], W.T, tensors.pop(_bias_of(heads[0])))
    embeddings = _pick(tensors, "embedding.weight", lambda n, t: t.ndim == 2 and t.shape[1] == in_0)
    if len(embeddings) > 1:
        raise SourceError(f"{source} has {len(embeddings)} tensors that could be the embedding "
                          f"({', '.join(repr(n) for n in embeddings)}); name it with --map NAME=embedding.weight.")
    front = [Embedding(embeddings[0], tensors.pop(embeddings[0]))] if embeddings else []
    if tensors:
        name = next(iter(tensors))
        raise SourceError(f"{source} holds {name!r} {tuple(tensors[name].shape)}, which is no part of an "
                          f"Embedding -> LSTM -> Linear model; drop it with --map {name}=ignore if the model does not use it.")
    return Source(front + layers + [head])


def _bias_of(weight_name):
    return weight_name[:-len("weight")] + "bias"


def _pick(tensors, canonical, fits):
    """[canonical] if --map named it, else every tensor name that `fits` (name, tensor)."""
    if canonical in tensors:
        return [canonical]
    return [n for n, t in tensors.items() if fits(n, t)]


# ---------------------------------------------------------------------------------------------
# The vocabulary, in the model's index order

def read_vocab(spec):
    """The characters of the model's ids, in index order, from `spec`: a .json file (a list of
    one-character strings, or a string), a text file whose characters are all distinct (the
    entries in order), or a corpus (a built-in name or a text file with repeated characters: its
    sorted characters, as `rosetta train` builds the vocabulary)."""
    from common.corpus import BUILTINS, load_text

    path = Path(spec)
    if str(spec) not in BUILTINS and path.suffix == ".json":
        if not path.is_file():
            raise ConfigError(f"no vocabulary file at {spec}; check the path (--vocab).")
        try:
            chars = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise ConfigError(f"the vocabulary file {spec} is not UTF-8 JSON ({e}); write it as a JSON list of characters.") from None
        if isinstance(chars, str):
            chars = list(chars)
        if not isinstance(chars, list) or not all(isinstance(c, str) and len(c) == 1 for c in chars):
            raise ConfigError(f"the vocabulary file {spec} is not a JSON list of one-character strings "
                              f"(the model's characters in index order); write it as such a list.")
    else:
        text = load_text(spec)  # CorpusError: a missing file, not UTF-8, an unknown name
        chars = list(text) if len(set(text)) == len(text) else sorted(set(text))
    if len(set(chars)) != len(chars):
        twice = next(c for c in chars if chars.count(c) > 1)
        raise ConfigError(f"the vocabulary {spec} lists {twice!r} twice; give each character once, in the model's index order.")
    return chars


# ---------------------------------------------------------------------------------------------
# A Source and a vocabulary, to the interchange weights

def check_layers(layers, source):
    """(embedding or None, [LSTM], head) after checking that `layers` chain as the interchange model does."""
    kinds = [type(layer).__name__ for layer in layers]
    lstms = [layer for layer in layers if isinstance(layer, LSTM)]
    heads = [layer for layer in layers if isinstance(layer, Head)]
    embeddings = [layer for layer in layers if isinstance(layer, Embedding)]
    if not lstms:
        raise SourceError(f"{source} has no LSTM layer; import a model with one or more LSTM layers.")
    if len(heads) > 1:
        raise SourceError(f"{source} has two heads ({heads[0].name!r} and {heads[1].name!r}); the interchange "
                          f"model has one Dense/Linear head after its last LSTM: import a model with one.")
    if not heads or kinds[-1] != "Head":
        raise SourceError(f"{source} has no Dense/Linear head after its last LSTM {lstms[-1].name!r}; import a "
                          f"model that ends in one, giving a logit per character.")
    if embeddings and kinds[0] != "Embedding" or len(embeddings) > 1:
        raise SourceError(f"the embedding {embeddings[-1].name!r} of {source} is not the model's first layer; "
                          f"the interchange model reads characters only at its input.")
    embedding, head = (embeddings[0] if embeddings else None), heads[0]
    H = lstms[0].W_h.shape[0]
    for k, lstm in enumerate(lstms):
        if lstm.W_h.shape[0] != H:
            raise SourceError(f"LSTM {lstm.name!r} of {source} has {lstm.W_h.shape[0]} units and {lstms[0].name!r} {H}; "
                              f"the interchange model has one hidden size for every layer.")
        if lstm.recurrent_activation != lstms[0].recurrent_activation:
            raise SourceError(f"LSTM {lstm.name!r} of {source} uses {lstm.recurrent_activation} gates and "
                              f"{lstms[0].name!r} {lstms[0].recurrent_activation}; the interchange model uses one for every layer.")
        if k > 0 and lstm.W_x.shape[0] != H:
            raise SourceError(f"LSTM {lstm.name!r} of {source} reads {lstm.W_x.shape[0]} inputs, not the {H} "
                              f"units of the layer below; import a plain stack of LSTM layers.")
    V = head.W.shape[1]
    if head.W.shape[0] != H:
        raise SourceError(f"the head {head.name!r} of {source} reads {head.W.shape[0]} inputs, not the {H} units "
                          f"of the last LSTM; import a model whose head follows the LSTM directly.")
    in_0 = lstms[0].W_x.shape[0]
    if embedding is not None and (embedding.E.shape[0] != V or embedding.E.shape[1] != in_0):
        raise SourceError(f"the embedding {embedding.name!r} of {source} has shape {tuple(embedding.E.shape)}, but "
                          f"the model has {V} characters and its first LSTM reads {in_0} inputs; import a model "
                          f"whose embedding has a row per character of its head.")
    if embedding is None and in_0 != V:
        raise SourceError(f"the first LSTM {lstms[0].name!r} of {source} reads {in_0} inputs but the head gives {V} "
                          f"logits; without an embedding the input must be one-hot over the same {V} characters.")
    return embedding, lstms, head


def convert(src, chars, source, vocab_spec="the vocabulary"):
    """(weights, Vocabulary, Config) of the interchange model that computes what `src` computes.

    float64 when every source array is float64, else float32. The embedding is folded in float64
    (E @ W_x: row v of the product is what the source computes for character v, one rounding).
    """
    from common.config import Config
    from common.corpus import Vocabulary

    embedding, lstms, head = check_layers(src.layers, source)
    V, H = head.W.shape[1], lstms[0].W_h.shape[0]
    if len(chars) != V:
        raise ConfigError(f"{vocab_spec} has {len(chars)} characters but {source} has {V} (its head's outputs); "
                          f"give the vocabulary the model was trained with, in its index order (--vocab).")
    arrays = [a for layer in src.layers for a in vars(layer).values() if isinstance(a, np.ndarray)]
    dtype = "float64" if all(a.dtype == np.float64 for a in arrays) else "float32"
    order = np.argsort(np.array([ord(c) for c in chars]), kind="stable")  # new id k is old id order[k]
    weights = {}
    for l, lstm in enumerate(lstms):
        W_x = lstm.W_x.astype(np.float64)
        if l == 0:
            W_x = (embedding.E.astype(np.float64) @ W_x) if embedding is not None else W_x  # (V, 4H)
            W_x = W_x[order]
        weights[f"lstm.{l}.W_x"], weights[f"lstm.{l}.W_h"], weights[f"lstm.{l}.b"] = W_x, lstm.W_h, lstm.b
    weights["head.W"], weights["head.b"] = head.W[:, order], head.b[order]
    weights = {name: np.ascontiguousarray(w, dtype=dtype) for name, w in weights.items()}
    changes = {"seq_length": src.seq_length} if src.seq_length else {}
    config = Config(vocab_size=V, hidden_size=H, num_layers=len(lstms), dtype=dtype, target=src.target,
                    recurrent_activation=lstms[0].recurrent_activation, **changes)
    return weights, Vocabulary(chars), config


# ---------------------------------------------------------------------------------------------
# rosetta import

def parse_map(pairs):
    """--map OLD=NEW pairs as a dict, each NEW one of MAP_TARGETS."""
    mapping = {}
    for pair in pairs or ():
        old, eq, new = pair.partition("=")
        if not eq or not old or not (new == "ignore" or re.fullmatch(
                r"embedding\.weight|head\.(weight|bias)|lstm\.(weight_ih|weight_hh|bias_ih|bias_hh)_l\d+", new)):
            raise ConfigError(f"--map {pair!r} is not NAME=TARGET with TARGET one of {MAP_TARGETS}.")
        mapping[old] = new
    return mapping


def reader_of(source):
    """The reader module's name for a source file, refusing what is not one."""
    path = Path(source)
    if not path.exists():
        raise ConfigError(f"no model file at {source}; check the path.")
    if path.is_dir():
        raise ConfigError(f"{source} is a folder; pass the model file (.keras, .h5, .pt, .pth or .onnx).")
    if path.suffix.lower() not in READERS:
        raise ConfigError(f"{source} is not a .keras, .h5, .pt/.pth/.bin (torch.save of a state_dict) or .onnx "
                          f"file; save the model as one of those, or rename it to its format's suffix.")
    return READERS[path.suffix.lower()]


def import_model(source, vocab, out, mapping=None, force=False):
    """Read `source`, convert it with the vocabulary `vocab` (file or corpus), and write the
    checkpoint `out` atomically (common/checkpoint.py); returns (out Path, Config, notes for the
    user). Nothing is written unless every check passes."""
    from common.checkpoint import save_checkpoint

    out = Path(out)
    if out.suffix != ".safetensors":
        raise ConfigError(f"the output {out} must be a .safetensors file; name it like {out.with_suffix('.safetensors').name}.")
    if out.exists() and not force:
        raise ConfigError(f"{out} already exists; pass --force to replace it, or choose another name.")
    module = reader_of(source)
    if mapping and module != "torch_impl.importer":
        raise ConfigError("--map renames the tensors of a PyTorch state_dict; a Keras or ONNX file names its own layers.")
    chars = read_vocab(vocab)  # before the slow framework import
    try:
        reader = importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(f"reading {source} needs {KINDS[module]}, which cannot be imported ({e}); "
                          f"install it with pip install -r requirements.txt.") from None
    src = reader.read(source, mapping) if mapping else reader.read(source)
    weights, vocabulary, config = convert(src, chars, source, vocab_spec=f"the vocabulary {vocab}")
    save_checkpoint(out, weights, vocabulary, config, f"imported from {KINDS[module]}")
    return out, config, src.notes
