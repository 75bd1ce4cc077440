"""The interchange weights as a plain Keras model of built-in layers, saved as .keras.

    model = build_model(weights, config)      # {"ids", "h", "c"} -> {"logits", "h", "c"}
    save_keras(model, "m.keras", metadata_json)
    keras.saving.load_model("m.keras")        # in the user's code, without this project

ids: int64 (B, T); h, c: float32 (L, B, H), every layer's state stacked (zeros to start);
logits: float32 (B, T, V). Only built-in layers (Embedding as the one-hot, LSTM, Dense) and
keras.ops, so the file loads with safe_mode on and no custom objects. Called by common/export.py.
"""

import zipfile

import keras
import numpy as np


def build_model(weights, config):
    """A functional keras.Model in float32 holding the interchange `weights`."""
    vocab_size, hidden_size, num_layers = config.vocab_size, config.hidden_size, config.num_layers
    ids = keras.Input(shape=(None,), dtype="int64", name="ids")                         # (B, T)
    h = keras.Input(batch_shape=(num_layers, None, hidden_size), name="h")               # (L, B, H)
    c = keras.Input(batch_shape=(num_layers, None, hidden_size), name="c")               # (L, B, H)
    one_hot = keras.layers.Embedding(vocab_size, vocab_size, trainable=False, name="one_hot")  # identity rows
    x = one_hot(ids)                                                                     # (B, T, V)
    layers, hs, cs = [], [], []
    for l in range(num_layers):
        lstm = keras.layers.LSTM(hidden_size, return_sequences=True, return_state=True, name=f"lstm_{l}")
        x, h_l, c_l = lstm(x, initial_state=[h[l], c[l]])                                # (B, T, H)
        layers.append(lstm)
        hs.append(h_l)
        cs.append(c_l)
    head = keras.layers.Dense(vocab_size, name="head")
    logits = head(x)                                                                     # (B, T, V)
    model = keras.Model({"ids": ids, "h": h, "c": c},
                        {"logits": logits, "h": keras.ops.stack(hs), "c": keras.ops.stack(cs)})
    f32 = lambda w: np.asarray(w, dtype=np.float32)
    one_hot.set_weights([np.eye(vocab_size, dtype=np.float32)])
    for l, lstm in enumerate(layers):  # Keras' gate order is i, f, c (our g), o: the interchange order
        lstm.cell.set_weights([f32(weights[f"lstm.{l}.W_x"]), f32(weights[f"lstm.{l}.W_h"]), f32(weights[f"lstm.{l}.b"])])
    head.set_weights([f32(weights["head.W"]), f32(weights["head.b"])])
    return model


def save_keras(model, path, metadata_json):
    """model.save(path) (path ends in .keras), then rosetta.json added to the zip beside Keras' own files."""
    model.save(path)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("rosetta.json", metadata_json)
