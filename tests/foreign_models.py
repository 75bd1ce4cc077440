"""Character LSTMs written the way users write them, in plain Keras, PyTorch and ONNX code that does
not import this project (test_import.py checks that), trained a few steps and saved as users
save them; the source model's own predictions over TEXT are saved beside them.

    python tests/foreign_models.py keras OUT      # KERAS_BACKEND=tensorflow
    python tests/foreign_models.py torch OUT
    python tests/foreign_models.py refusals OUT   # models rosetta import must refuse (Keras, torch, onnx)

OUT/text.txt is the text, OUT/corpus.txt ten copies of it (a corpus of the same characters).
Each model numbers its characters in order of first appearance (vocab.json), not sorted, as
`chars = list(dict.fromkeys(text))` does; OUT/predictions-<kind>.npz holds, per model, "<name>" (the
predictions: logits, or probabilities for a softmax head) and "<name>/x" (the ids it read).
"""

import json
import sys
from pathlib import Path

import numpy as np

TEXT = "the cat sat on the mat. a dog ate the hat! the end?\n" * 2
CHARS = list(dict.fromkeys(TEXT))           # index order: first appearance
V, H, T = len(CHARS), 12, 10
IDS = np.array([CHARS.index(c) for c in TEXT], dtype=np.int64)


def windows(ids, length, stride=1):
    """(N, length) windows of `ids` and the next id of each, for a many-to-one model."""
    starts = range(0, len(ids) - length, stride)
    return np.stack([ids[s:s + length] for s in starts]), np.array([ids[s + length] for s in starts])


def one_hot(ids):
    return np.eye(V, dtype=np.float32)[ids]


# ---------------------------------------------------------------------------------------------
# Keras

def keras_models(out):
    import keras

    keras.utils.set_random_seed(3)
    x, y = IDS[None, :-1], IDS[None, 1:]
    preds = {}

    # Sequential: Embedding -> 2 LSTM (dropout only in training) -> Dense logits; .keras
    seq = keras.Sequential([keras.Input((None,), dtype="int32"), keras.layers.Embedding(V, 7),
                            keras.layers.LSTM(H, return_sequences=True, dropout=0.1, recurrent_dropout=0.1),
                            keras.layers.LSTM(H, return_sequences=True), keras.layers.Dense(V)])
    seq.compile(optimizer=keras.optimizers.Adam(0.01), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    seq.fit(x, y, epochs=3, verbose=0)
    seq.save(out / "seq.keras")
    preds["seq"], preds["seq/x"] = seq.predict(x, verbose=0), x

    # functional: one-hot input -> LSTM with hard_sigmoid gates -> Dropout -> TimeDistributed(Dense softmax); .h5
    inputs = keras.Input((None, V))
    h = keras.layers.LSTM(H, return_sequences=True, recurrent_activation="hard_sigmoid")(inputs)
    h = keras.layers.Dropout(0.2)(h)
    probs = keras.layers.TimeDistributed(keras.layers.Dense(V, activation="softmax"))(h)
    fun = keras.Model(inputs, probs)
    fun.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    fun.fit(one_hot(x), y, epochs=3, verbose=0)
    fun.save(out / "fun.h5")  # the legacy HDF5 format of Keras 2
    preds["fun"], preds["fun/x"] = fun.predict(one_hot(x), verbose=0), x

    # the seed post's model: windows of T one-hot characters -> LSTM -> Dense softmax on the next one
    wx, wy = windows(IDS, T)
    last = keras.Sequential([keras.Input((T, V)), keras.layers.LSTM(H), keras.layers.Dense(V, activation="softmax")])
    last.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    last.fit(one_hot(wx), wy, batch_size=16, epochs=2, verbose=0)
    last.save(out / "last.keras")
    preds["last"], preds["last/x"] = last.predict(one_hot(wx), verbose=0), wx
    return preds


# ---------------------------------------------------------------------------------------------
# PyTorch (and torch.onnx)

def torch_models(out):
    import torch
    import torch.nn as nn

    torch.manual_seed(3)

    class CharModel(nn.Module):
        def __init__(self, embed=None, layers=1, dtype=torch.float32):
            super().__init__()
            self.embed = nn.Embedding(V, embed) if embed else None
            self.rnn = nn.LSTM(embed or V, H, layers, batch_first=True)
            self.decoder = nn.Linear(H, V)
            self.to(dtype)

        def forward(self, ids):
            x = self.embed(ids) if self.embed is not None else nn.functional.one_hot(ids, V).to(self.decoder.weight.dtype)
            return self.decoder(self.rnn(x)[0])

    x, y = torch.from_numpy(IDS[None, :-1]), torch.from_numpy(IDS[None, 1:])
    preds = {}
    for name, model in {"emb": CharModel(embed=6, layers=2), "f64": CharModel(dtype=torch.float64)}.items():
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
        for _ in range(5):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x).reshape(-1, V), y.reshape(-1)).backward()
            optimizer.step()
        model.eval()
        torch.save(model.state_dict(), out / f"{name}.pt")
        with torch.no_grad():
            preds[name], preds[f"{name}/x"] = model(x).numpy(), x.numpy()
    emb = CharModel(embed=6, layers=2)
    emb.load_state_dict(torch.load(out / "emb.pt", weights_only=True))
    emb.eval()
    for dynamo in (True, False):  # the current exporter and the TorchScript one: both write LSTM nodes
        name = "onnx_dynamo" if dynamo else "onnx_script"
        torch.onnx.export(emb, (x,), str(out / f"{name}.onnx"), dynamo=dynamo, input_names=["ids"], output_names=["logits"])
        preds[name], preds[f"{name}/x"] = preds["emb"], preds["emb/x"]
    return preds


# ---------------------------------------------------------------------------------------------
# Models that are not the interchange model

def refusal_models(out):
    """Files named after what rosetta import must refuse in them."""
    import keras
    import onnx
    import torch
    import torch.nn as nn
    from onnx import TensorProto, helper, numpy_helper

    def sequential(name, *middle):
        keras.Sequential([keras.Input((None,), dtype="int32"), keras.layers.Embedding(V, 5), *middle,
                          keras.layers.Dense(V)]).save(out / f"{name}.keras")

    sequential("gru", keras.layers.GRU(H, return_sequences=True))
    sequential("simple_rnn", keras.layers.SimpleRNN(H, return_sequences=True))
    sequential("bidirectional", keras.layers.Bidirectional(keras.layers.LSTM(H, return_sequences=True)))
    sequential("no_bias", keras.layers.LSTM(H, return_sequences=True, use_bias=False))
    sequential("relu_cell", keras.layers.LSTM(H, return_sequences=True, activation="relu"))
    sequential("good", keras.layers.LSTM(H, return_sequences=True))
    ids = keras.Input((None,), dtype="int32")
    h = keras.layers.LSTM(H, return_sequences=True, dropout=0.3)(keras.layers.Embedding(V, 5)(ids), training=True)
    keras.Model(ids, keras.layers.Dense(V)(h)).save(out / "mc_dropout.keras")
    h = keras.layers.LSTM(H, return_sequences=True)(keras.layers.Embedding(V, 5)(ids))
    keras.Model(ids, [keras.layers.Dense(V)(h), keras.layers.Dense(V)(h)]).save(out / "two_heads.keras")

    def state_dict(name, **modules):
        torch.save(nn.ModuleDict(modules).state_dict(), out / f"{name}.pt")

    state_dict("torch_gru", rnn=nn.GRU(V, H), fc=nn.Linear(H, V))
    state_dict("torch_bidirectional", rnn=nn.LSTM(V, H, bidirectional=True), fc=nn.Linear(2 * H, V))
    state_dict("torch_proj", rnn=nn.LSTM(V, H, proj_size=4), fc=nn.Linear(4, V))
    state_dict("torch_no_bias", rnn=nn.LSTM(V, H, bias=False), fc=nn.Linear(H, V))
    state_dict("torch_two_heads", rnn=nn.LSTM(V, H), fc=nn.Linear(H, V), aux=nn.Linear(H, V))

    # an ONNX LSTM node with peepholes (input P), which neither Keras 3 nor nn.LSTM has
    rng = np.random.default_rng(0)
    init = lambda name, shape: numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
    node = helper.make_node("LSTM", ["x", "W", "R", "B", "", "", "", "P"], ["y"], hidden_size=H)
    head = helper.make_node("MatMul", ["y2", "Wy"], ["z"])
    squeeze = helper.make_node("Squeeze", ["y", "axis"], ["y2"])
    graph = helper.make_graph(
        [node, squeeze, head, helper.make_node("Add", ["z", "by"], ["logits"])], "peephole",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", "B", V])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["T", "B", V])],
        [init("W", (1, 4 * H, V)), init("R", (1, 4 * H, H)), init("B", (1, 8 * H)), init("P", (1, 3 * H)),
         init("Wy", (H, V)), init("by", (V,)), numpy_helper.from_array(np.array([1], np.int64), "axis")])
    onnx.save_model(helper.make_model(graph), out / "peephole.onnx")


if __name__ == "__main__":
    kind, out = sys.argv[1], Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps(CHARS), encoding="utf-8")
    (out / "text.txt").write_text(TEXT, encoding="utf-8")
    (out / "corpus.txt").write_text(TEXT * 10, encoding="utf-8")  # long enough to train and validate on
    if kind == "refusals":
        refusal_models(out)
    else:
        preds = keras_models(out) if kind == "keras" else torch_models(out)
        np.savez(out / f"predictions-{kind}.npz", **preds)
