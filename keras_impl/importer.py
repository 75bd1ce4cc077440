"""The Keras reader of `rosetta import` (common/importing.py): a Keras 3 .keras file or a Keras 2
.h5 file that Keras 3 loads, Sequential or functional, read with keras.saving.load_model (safe
mode: no code in the file runs) and walked layer by layer. Keras only; the backend does not matter.

    Input (ids, or one-hot (T, V)) -> Embedding? -> LSTM+ -> Dense (TimeDistributed or not) -> softmax?

Dropout layers, and the dropout and recurrent_dropout of an LSTM, act only in training (Keras
applies them when training=True, which fit sets and predict does not), so they are the same
model in inference and are read through; a layer called with training=True in a functional model
(Monte Carlo dropout) draws new masks at every prediction, so no checkpoint computes what it does
and it is refused.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402

from common.importing import Embedding, Head, LSTM, Source, SourceError, keras_lstm  # noqa: E402

NOT_LSTM = {"GRU": "a GRU", "SimpleRNN": "a SimpleRNN", "Bidirectional": "a Bidirectional wrapper (it reads the text "
            "backwards too)", "ConvLSTM1D": "a ConvLSTM1D", "RNN": "a generic RNN layer"}
INFERENCE_OFF = ("Dropout", "SpatialDropout1D", "GaussianDropout", "GaussianNoise", "AlphaDropout")
RECURRENT = {"sigmoid": "sigmoid", "hard_sigmoid": "hard_sigmoid"}


def load(source):
    try:
        return keras.saving.load_model(source, compile=False)
    except Exception as e:  # Keras raises ValueError, TypeError, OSError... with the reason in the text
        raise SourceError(f"Keras cannot load {source} ({type(e).__name__}: {str(e).splitlines()[0][:160]}); "
                          f"save the model with model.save() in Keras 3 (.keras) or Keras 2 (.h5).") from None


def training_calls(model):
    """Names of the layers a functional model calls with training=True (none in a Sequential)."""
    layers = model.get_config().get("layers", []) if not isinstance(model, keras.Sequential) else []
    return {layer["name"] for layer in layers for node in layer.get("inbound_nodes", [])
            if isinstance(node, dict) and node.get("kwargs", {}).get("training") is True}


def lstm_layer(layer, source, forced):
    c = layer.get_config()
    name = layer.name
    if c["activation"] != "tanh":
        raise SourceError(f"LSTM {name!r} of {source} uses the {c['activation']} cell activation, where the interchange "
                          f"LSTM uses tanh; import an LSTM with activation='tanh'.")
    if c["recurrent_activation"] not in RECURRENT:
        raise SourceError(f"LSTM {name!r} of {source} uses {c['recurrent_activation']} gates; the interchange LSTM has "
                          f"sigmoid or hard_sigmoid.")
    if not c["use_bias"]:
        raise SourceError(f"LSTM {name!r} of {source} has use_bias=False; the interchange LSTM always has a bias: "
                          f"import an LSTM with use_bias=True.")
    if c.get("go_backwards"):
        raise SourceError(f"LSTM {name!r} of {source} has go_backwards=True and reads the text from its end; import a "
                          f"forward LSTM.")
    if name in forced and (c.get("dropout") or c.get("recurrent_dropout")):
        raise SourceError(f"LSTM {name!r} of {source} is called with training=True and dropout {c.get('dropout')}, "
                          f"recurrent_dropout {c.get('recurrent_dropout')}, so it drops units at every prediction and "
                          f"no fixed weights compute it; call it without training=True.")
    kernel, recurrent_kernel, bias = layer.get_weights()
    return LSTM(name, *keras_lstm(kernel, recurrent_kernel, bias), recurrent_activation=RECURRENT[c["recurrent_activation"]])


def dense_layer(layer, source):
    c = layer.get_config()
    if not c["use_bias"]:
        raise SourceError(f"the Dense head {layer.name!r} of {source} has use_bias=False; the interchange head always "
                          f"has a bias: import a Dense head with use_bias=True.")
    if c["activation"] not in ("linear", "softmax"):
        raise SourceError(f"the Dense head {layer.name!r} of {source} applies {c['activation']}, so its outputs are not "
                          f"logits; import a head with a linear or softmax activation.")
    W, b = layer.get_weights()
    return Head(layer.name, W, b, softmax=c["activation"] == "softmax")


def read(path):
    """A Source from the .keras or .h5 file at `path`."""
    source = str(path)
    model = load(source)
    if len(model.outputs) != 1:
        raise SourceError(f"{source} has {len(model.outputs)} outputs (two heads); the interchange model has one head: "
                          f"import a model with one output.")
    if len(model.inputs) != 1:
        raise SourceError(f"{source} has {len(model.inputs)} inputs; the interchange model reads one sequence of characters.")
    forced = training_calls(model)
    shape = tuple(model.inputs[0].shape)  # (B, T) ids, or (B, T, V) one-hot
    layers, lstms, notes, last_sequences = [], [], [], True
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "TimeDistributed" and type(layer.layer).__name__ == "Dense":
            layer, kind = layer.layer, "Dense"
        if kind == "InputLayer":
            continue
        if kind in NOT_LSTM:
            raise SourceError(f"layer {layer.name!r} of {source} is {NOT_LSTM[kind]}, not an LSTM; the interchange model "
                              f"is a stack of forward LSTM layers.")
        if kind in INFERENCE_OFF:
            if layer.name in forced:
                raise SourceError(f"layer {layer.name!r} ({kind}) of {source} is called with training=True, so it drops "
                                  f"units at every prediction and no fixed weights compute it; call it without training=True.")
            continue
        if kind == "Embedding":
            if layer.get_config().get("mask_zero"):
                raise SourceError(f"the Embedding {layer.name!r} of {source} has mask_zero=True, so the LSTM skips "
                                  f"character 0; import a model without masking.")
            layers.append(Embedding(layer.name, layer.get_weights()[0]))
        elif kind == "LSTM":
            layers.append(lstm_layer(layer, source, forced))
            last_sequences = layer.get_config()["return_sequences"]
        elif kind == "Dense":
            layers.append(dense_layer(layer, source))
        elif kind in ("Activation", "Softmax") and layers and isinstance(layers[-1], Head):
            activation = layer.get_config().get("activation", "softmax")
            if activation not in ("linear", "softmax"):
                raise SourceError(f"the head of {source} is followed by {layer.name!r} ({activation}), so its outputs are "
                                  f"not logits; import a head with a linear or softmax activation.")
            layers[-1].softmax = layers[-1].softmax or activation == "softmax"
        else:
            raise SourceError(f"layer {layer.name!r} ({kind}) of {source} has no place in the interchange model "
                              f"(an optional Embedding, LSTM layers, a Dense head); import a model of those.")
    if any(isinstance(layer, Head) and layer.softmax for layer in layers):
        notes.append("the source applies a softmax after its head; the checkpoint holds the logits before it")
    if len(shape) == 3 and layers and isinstance(layers[0], Embedding):
        raise SourceError(f"{source} feeds a {shape[1:]} input to an Embedding; import a model whose Embedding reads ids.")
    T = shape[1] if len(shape) > 1 and isinstance(shape[1], int) else None
    target = "all" if last_sequences else "last"  # an LSTM that returns its last output predicts one character
    if target == "last":
        notes.append(f"the source predicts from the last position only (return_sequences=False): the checkpoint "
                     f"has target last{f' with windows of {T}' if T else ''}")
    return Source(layers, target=target, seq_length=T, notes=notes)
