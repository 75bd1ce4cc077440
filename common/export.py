"""`rosetta export`: a checkpoint as a file that plain Keras, PyTorch or onnxruntime code loads.

    export("m.safetensors", "keras", "m.keras")    # keras.saving.load_model("m.keras")
    export("m.safetensors", "torch", "m.pt2")      # torch.export.load("m.pt2").module()
    export("m.safetensors", "onnx",  "m.onnx")     # onnxruntime.InferenceSession("m.onnx")

Every export is the same function in float32 (whatever the checkpoint's dtype):

    inputs   ids (B, T) int64, h (L, B, H) float32, c (L, B, H) float32   (zeros: a fresh start)
    outputs  logits (B, T, V) float32, h and c (L, B, H) after the last position

so feeding the returned h, c back with the next character samples one character at a time.
The state is optional only in the ONNX file (STATE_OPTIONAL): {"ids": ids} alone is a fresh start.
torch.export cannot trace an optional input (PyTorch's ExportDB case "optional_input") and a
functional Keras model's built-in layers cannot take a missing state without a custom layer that
plain load_model code would have to register, so those two take zeros for a fresh start.
The vocabulary and sizes travel inside the file as the JSON text "rosetta.json" (METADATA below):
an entry of the .keras zip, an extra file of the .pt2, a metadata_props entry of the .onnx.

Everything a user can get wrong (a missing checkpoint, an unknown --to, an output suffix that
does not match, an existing output without force, a missing package) is refused in one sentence
before any file is touched; the export is written to a temporary file beside the output and
renamed over it only when complete. This module imports no framework: torch_impl/export.py and
keras_impl/export.py build the models, by module name.
"""

import importlib
import importlib.util
import json
import os
import secrets
from pathlib import Path

from common.errors import ConfigError
from common.frameworks import quiet

SUFFIXES = {"keras": ".keras", "torch": ".pt2", "onnx": ".onnx"}
# Importable modules each target needs to be written (onnx: torch's exporter and the onnx packages)
NEEDS = {"keras": ("keras",), "torch": ("torch",), "onnx": ("torch", "onnx", "onnxscript")}
# The module that builds each, reached by name as common/frameworks.py reaches the models
BUILDERS = {"keras": "keras_impl.export", "torch": "torch_impl.export", "onnx": "torch_impl.export"}
# What writes each, for the line printed before the slow part (torch.onnx traces and converts the model)
WRITERS = {"keras": "keras.saving", "torch": "torch.export", "onnx": "torch.onnx (about 20 s)"}
METADATA = "rosetta.json"
STATE_OPTIONAL = {"keras": False, "torch": False, "onnx": True}
FORMAT = "lstm-rosetta-export/1"


def check_export(checkpoint, to, output, force=False):
    """Refuse, with a RosettaError of one sentence, an export that cannot or should not be written."""
    from common.checkpoint import load_checkpoint

    if to not in SUFFIXES:
        raise ConfigError(f"unknown export format {to!r}; choose one of {', '.join(SUFFIXES)} (--to).")
    output = Path(output)
    if output.suffix != SUFFIXES[to]:
        raise ConfigError(f"an export --to {to} is a {SUFFIXES[to]} file, but the output is {output}; "
                          f"name it like {output.with_suffix(SUFFIXES[to]).name}.")
    if output.is_dir():
        raise ConfigError(f"the output {output} is a folder; give a file name such as {output / ('model' + SUFFIXES[to])}.")
    if output.exists() and not force:
        raise ConfigError(f"{output} already exists; pass --force to replace it, or choose another name.")
    if not output.parent.is_dir():
        raise ConfigError(f"the folder {output.parent} does not exist; create it first or choose another output.")
    missing = [name for name in NEEDS[to] if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"an export --to {to} needs {' and '.join(missing)}, which cannot be imported; "
                          f"install it with pip install -r requirements.txt.")
    ckpt = load_checkpoint(checkpoint)  # CheckpointError: missing, unreadable or not fitting
    if ckpt.config.recurrent_activation != "sigmoid":
        raise ConfigError(f"{checkpoint} uses the {ckpt.config.recurrent_activation} gate activation, which "
                          f"nn.LSTM and the exports do not have; export a model trained with sigmoid gates.")
    return ckpt


def metadata_json(ckpt, to=None):
    """The JSON text stored as rosetta.json in every export: what a user needs to feed and read it."""
    c = ckpt.config
    optional = STATE_OPTIONAL.get(to, False)
    state = ("float32 (num_layers, batch or 1, hidden_size); optional: left out, zeros (a fresh start)"
             if optional else "float32 (num_layers, batch, hidden_size), zeros to start; always passed")
    return json.dumps({
        "format": FORMAT, "vocab": ckpt.vocab.chars, "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size, "num_layers": c.num_layers, "target": c.target,
        "seq_length": c.seq_length, "trained_by": ckpt.framework,
        "inputs": {"ids": "int64 (batch, time): indices into vocab",
                   "h": state, "c": state},
        "state_optional": optional,
        "outputs": {"logits": "float32 (batch, time, vocab_size)",
                    "h": "float32 (num_layers, batch, hidden_size)", "c": "the same as h"},
    }, ensure_ascii=False)


def write(ckpt, to, tmp):
    """Build the export from the checkpoint's weights with the framework's own layers and write `tmp`."""
    meta = metadata_json(ckpt, to)
    with quiet():  # the frameworks' start-up lines, torch.onnx's registry notes and its warnings
        module = importlib.import_module(BUILDERS[to])
        if to == "keras":
            module.save_keras(module.build_model(ckpt.weights, ckpt.config), str(tmp), meta)
        else:
            save = module.save_pt2 if to == "torch" else module.save_onnx
            save(module.build_module(ckpt.weights, ckpt.config), str(tmp), meta)


def export(checkpoint, to, output, force=False, announce=None):
    """Write the checkpoint as a `to` file at `output`, atomically; returns the output Path.
    announce(line): called with what is about to happen, after the checks and before the slow part."""
    ckpt = check_export(checkpoint, to, output, force)
    output = Path(output)
    if announce:
        announce(f"exporting {checkpoint} to {output} with {WRITERS[to]}...")
    tmp = output.with_name(f".{output.stem}.{secrets.token_hex(4)}.tmp{output.suffix}")  # keras wants the suffix
    try:
        write(ckpt, to, tmp)
        os.replace(tmp, output)
    except OSError as e:
        raise ConfigError(f"cannot write {output} ({e.strerror or e}); choose a writable path.") from None
    finally:
        tmp.unlink(missing_ok=True)
        tmp.with_name(tmp.name + ".data").unlink(missing_ok=True)  # an ONNX exporter's external weights, if any
    return output
