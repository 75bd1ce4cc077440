"""Keras 3 character-level LSTM: keras.layers.LSTM (path="layer") or a custom cell written with
keras.ops inside keras.layers.RNN (path="cell"). What matters in Keras: a keras.Model built from
layers, compiled with a loss and an optimizer, trained with train_on_batch; the same file runs on
the TensorFlow, JAX and PyTorch backends (KERAS_BACKEND, read once when keras is imported).

    model = CharLSTM(config, init_weights(config))     # path="layer" (keras.layers.LSTM) or "cell"
    loss = model.train_step(x, y)                       # x, y: int (B, T)
    logits, state = model.forward(x)                    # np (B, T, V), [(h, c)] per layer
"""

import contextlib
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# float64 on JAX needs JAX's 64-bit mode, which JAX reads once, when it is imported (by keras,
# just below); without it a float64 model would silently compute in float32. It changes nothing
# on the other backends, and a float32 model keeps its float32 arrays.
os.environ.setdefault("JAX_ENABLE_X64", "true")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from common.errors import ConfigError  # noqa: E402
from common.checkpoint import check_training_state  # noqa: E402
from common.weights import check_weights  # noqa: E402

PATHS = ("layer", "cell")


# --- helpers

@contextlib.contextmanager
def floatx(dtype):
    """Keras' default float type set to `dtype` for what is made inside, then restored.

    The learning rate, the loss and the loss tracker that train_on_batch reports through are made
    in floatx unless told otherwise: in a float64 model they must be float64 too.
    """
    before = keras.config.floatx()
    keras.config.set_floatx(dtype)
    try:
        yield
    finally:
        keras.config.set_floatx(before)


def make_optimizer(config):
    """Keras' own optimizer for config.optimizer, clipping by global norm when clip_norm > 0 or
    by value when clip_value > 0 (Keras takes one clipping at most: common/config.py).

    Keras 3's formulas (keras/src/optimizers, update_step) differ from numpy_impl's default
    ("pytorch", which is torch's); numpy_impl.optim's formula="keras" copies these:
      Adam     alpha = lr * sqrt(1 - b2^t) / (1 - b1^t);  w -= m * alpha / (sqrt(v) + eps)
               eps outside the bias correction (torch: lr * m_hat / (sqrt(v_hat) + eps))
      Adagrad  s += g^2;  w -= lr * g / sqrt(s + eps)     (torch: lr * g / (sqrt(s) + eps))
      global_clipnorm (base_optimizer.clip_by_global_norm): norm = sqrt(sum of every sum(g^2));
               g *= clip_norm * min(1 / norm, 1 / clip_norm), always applied
               (torch: g *= clip_norm / (norm + 1e-6), only when that is < 1)
    Call it inside floatx(config.dtype): the learning rate lives in a variable of keras' floatx.
    """
    clip = {"global_clipnorm": config.clip_norm or None, "clipvalue": config.clip_value or None}
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(config.learning_rate, **clip)
    if config.optimizer == "adagrad":
        return keras.optimizers.Adagrad(config.learning_rate, initial_accumulator_value=0.0, epsilon=1e-10, **clip)
    # betas as numpy float64: Adam casts them with ops.cast, which takes a python float through
    # float32 (0.999 -> 0.99900001) on TensorFlow and torch, even in a float64 model
    return keras.optimizers.Adam(config.learning_rate, beta_1=np.float64(0.9), beta_2=np.float64(0.999),
                                 epsilon=1e-8, **clip)


def keep_float64():
    """Let keras.ops compute float64 in float64 on JAX and torch.

    Keras 3.15's type promotion (keras/src/backend/common/dtypes.py, BIT64_TO_BIT32_DTYPE) turns
    every float64 result type into float32 on all backends but TensorFlow, "to align with JAX's
    default": ops.matmul on torch, ops.tanh and ops.mean on JAX, the loss's mean, the optimizer's
    arithmetic then round a float64 model to float32 (keras-team/keras issues 23223 and 23704).
    With JAX's 64-bit mode on (above) float64 is JAX's own behaviour too; this drops that one entry
    of the table, for float64 models only (a float32 model never reaches it).
    """
    from keras.src.backend.common import dtypes

    dtypes.BIT64_TO_BIT32_DTYPE.pop("float64", None)


def hard_sigmoid(z):
    """Keras 3's hard sigmoid, relu6(z + 3) / 6, as ops.hard_sigmoid computes it on every backend;
    written out because on torch ops.hard_sigmoid is F.hardsigmoid, whose float64 gradient uses a
    float32 1/6 (torch_impl/model.py)."""
    return ops.relu6(z + 3) / 6


# the activation of the i, f and o gates, config.recurrent_activation (g keeps tanh)
RECURRENT_ACTIVATIONS = {"sigmoid": ops.sigmoid, "hard_sigmoid": hard_sigmoid}


# --- step

class LSTMCell(keras.layers.Layer):
    """One time step of the gate equations, the Keras 3 way: weights made in build(), math in
    call() with keras.ops, `state_size` telling keras.layers.RNN what to carry: [h, c], (B, H) each.

    call(x_t, [h, c]) -> (h, [h, c]); x_t (B, in). Autodiff gives the backward pass.
    """

    def __init__(self, input_size, units, recurrent_activation="sigmoid", **kwargs):
        super().__init__(**kwargs)
        self.input_size, self.units = input_size, units
        self.sigma = RECURRENT_ACTIVATIONS[recurrent_activation]
        self.state_size = [units, units]  # h, c
        self.output_size = units

    def build(self, input_shape=None):
        H = self.units
        self.W_x = self.add_weight(shape=(self.input_size, 4 * H), name="W_x")
        self.W_h = self.add_weight(shape=(H, 4 * H), name="W_h")
        self.b = self.add_weight(shape=(4 * H,), initializer="zeros", name="b")

    def call(self, inputs, states):
        h, c = states  # (B, H) each
        z = ops.matmul(inputs, self.W_x) + ops.matmul(h, self.W_h) + self.b  # (B, 4H)
        i, f, g, o = ops.split(z, 4, axis=-1)
        i, f, g, o = self.sigma(i), self.sigma(f), ops.tanh(g), self.sigma(o)
        c = f * c + i * g
        h = o * ops.tanh(c)
        return h, [h, c]


# --- layer over time

def lstm_layer(path, input_size, hidden_size, dtype, recurrent_activation="sigmoid"):
    """One LSTM layer over T steps, called as `hs, h, c = layer(x, initial_state=[h, c])`:
    x (B, T, in), hs (B, T, H). keras.layers.RNN runs the cell's loop (on each backend its own:
    tf.while_loop, jax.lax.scan, a python loop on torch); keras.layers.LSTM is the library's own."""
    if path == "layer":
        # "hard_sigmoid" would be ops.hard_sigmoid: the function above instead, for torch's float64
        activation = hard_sigmoid if recurrent_activation == "hard_sigmoid" else recurrent_activation
        return keras.layers.LSTM(hidden_size, recurrent_activation=activation,
                                 return_sequences=True, return_state=True, dtype=dtype)
    return keras.layers.RNN(LSTMCell(input_size, hidden_size, recurrent_activation, dtype=dtype),
                            return_sequences=True, return_state=True, dtype=dtype)


# --- model

class CarriedState(keras.Model):
    """`net` with its LSTM state kept in non-trainable variables: train_on_batch(x, y) starts from
    the state the previous call left, and leaves the new one (truncated BPTT).

    Why not keras.layers.LSTM(stateful=True) (docs/keras-state.md): keras.layers.RNN makes its
    state variables untracked, so they are not among the model's non_trainable_variables; the JAX
    trainer runs the step as a pure function of exactly those lists and drops every other
    assignment, so on JAX the state never moves. On torch, the layer's assign is an in-place copy
    into the tensor that autograd saved for the backward pass. Here the state variables are
    tracked (add_weight), so the JAX trainer returns their new values, and call() reads them
    through a copy, so that torch's autograd never holds the tensor that assign overwrites.
    """

    def __init__(self, net, batch_size, hidden_size, num_layers, **kwargs):
        super().__init__(**kwargs)
        self.net = net
        self.carried = [self.add_weight(shape=(batch_size, hidden_size), initializer="zeros",
                                        trainable=False, name=f"{name}{l}")
                        for l in range(num_layers) for name in ("h", "c")]  # h0, c0, h1, c1, ...

    def call(self, x):
        logits, *new_state = self.net([x, *(ops.copy(s.value) for s in self.carried)])
        for s, new in zip(self.carried, new_state):
            s.assign(ops.stop_gradient(new))
        return logits



class CharLSTM:
    """L stacked LSTM layers of H units and a dense head to V logits, a keras.Model trained with
    compile and train_on_batch."""

    def __init__(self, config, weights, path="layer", jit_compile="auto"):
        if path not in PATHS:
            raise ConfigError(f"keras has no path {path!r}; choose one of {', '.join(PATHS)}.")
        check_weights(weights, config)
        self.config, self.path, self.dtype = config, path, config.dtype
        if self.dtype == "float64":
            keep_float64()
        V, H, L = config.vocab_size, config.hidden_size, config.num_layers
        # The model takes the state as explicit inputs and gives the new state as outputs, as the
        # sampling model of Keras' char-rnn examples does: any batch size, any state.
        x = keras.Input((None,), dtype="int32", name="x")  # (B, T) character ids
        state = [keras.Input((H,), dtype=self.dtype, name=f"{name}{l}") for l in range(L) for name in ("h", "c")]
        hs = ops.one_hot(x, V, dtype=self.dtype)  # (B, T, V): layer 0's input
        new_state, self.params = [], {}
        for l in range(L):
            lstm = lstm_layer(path, V if l == 0 else H, H, self.dtype, config.recurrent_activation)
            hs, h, c = lstm(hs, initial_state=state[2 * l:2 * l + 2])  # hs (B, T, H)
            new_state += [h, c]
            cell = lstm.cell  # Keras stores W as (in_l, 4H) too (DESIGN.md)
            W_x, W_h, b = (cell.kernel, cell.recurrent_kernel, cell.bias) if path == "layer" else (cell.W_x, cell.W_h, cell.b)
            self.params.update({f"lstm.{l}.W_x": W_x, f"lstm.{l}.W_h": W_h, f"lstm.{l}.b": b})
        self.head = keras.layers.Dense(V, dtype=self.dtype)
        logits = self.head(hs)  # (B, T, V)
        self.params["head.W"], self.params["head.b"] = self.head.kernel, self.head.bias
        for name, p in self.params.items():
            p.assign(np.asarray(weights[name], dtype=self.dtype))
        # many-to-one: the compiled loss sees the last position only, (B, 1, V) against y (B, 1)
        scored = logits[:, -1:] if config.target == "last" else logits
        self.net = keras.Model([x, *state], [logits, *new_state])  # forward
        self.scorer = keras.Model([x, *state], scored)  # evaluate and gradients: the same layers
        self.trainer = CarriedState(keras.Model([x, *state], [scored, *new_state]), config.batch_size, H, L,
                                    dtype=self.dtype)  # train_step
        with floatx(self.dtype):
            self.loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)  # mean over B * T
            self.scorer.compile(loss=self.loss_fn, jit_compile=jit_compile)
            self.trainer.compile(optimizer=make_optimizer(config), loss=self.loss_fn, jit_compile=jit_compile)
        self.optimizer = self.trainer.optimizer
        if keras.backend.standardize_dtype(self.params["head.b"].dtype) != self.dtype:
            raise ConfigError(f"the {keras.backend.backend()} backend cannot hold {self.dtype} here; "
                              "set JAX_ENABLE_X64=true before jax is imported.")

    def get_weights(self):
        """The weights in the interchange layout: dict name -> np.ndarray (copies), config.dtype."""
        return {name: np.array(ops.convert_to_numpy(p)) for name, p in self.params.items()}

    def reset_state(self):
        """Zero the state carried from one train_step to the next (a new epoch)."""
        for s in self.trainer.carried:
            s.assign(ops.zeros(s.shape, s.dtype))

    @property
    def state(self):
        """The carried state: [(h, c)] per layer, np (B, H) each."""
        s = [ops.convert_to_numpy(v) for v in self.trainer.carried]
        return list(zip(s[0::2], s[1::2]))

    def zero_state(self, B):
        H = self.config.hidden_size
        return [(np.zeros((B, H), self.dtype), np.zeros((B, H), self.dtype)) for _ in range(self.config.num_layers)]

    def inputs(self, x, state):
        """The model's inputs: x int32 (B, T), then h0, c0, h1, c1, ... in config.dtype (zeros for None).

        Keras' data adapters cast float inputs to keras' floatx, and keras.ops take python floats
        in it: each Keras call runs inside floatx(config.dtype), or a float64 state would reach the
        model rounded to float32.
        """
        x = np.asarray(x, dtype=np.int32)
        state = self.zero_state(x.shape[0]) if state is None else state
        return [x, *(np.asarray(s, dtype=self.dtype) for hc in state for s in hc)]

    # --- forward
    def forward(self, x, state=None):
        """Logits np (B, T, V) in config.dtype and the new state [(h, c)] per layer; no update."""
        with floatx(self.dtype):  # see inputs()
            logits, *new_state = self.net.predict_on_batch(self.inputs(x, state))
        return logits, list(zip(new_state[0::2], new_state[1::2]))

    # --- loss
    def evaluate(self, x, y, state=None):
        """Mean cross-entropy over all B * T positions (config.target "all") or the B last ones
        ("last", y (B, 1)), a python float; no update."""
        with floatx(self.dtype):  # see inputs()
            return float(self.scorer.test_on_batch(self.inputs(x, state), np.asarray(y, dtype=np.int32)))

    # --- gradients
    # Keras 3 differentiates only inside its own training step; a gradient outside it is the
    # backend's job: one small function per backend, each on the same model and loss.
    def gradients(self, x, y, state=None):
        """dict interchange name -> np.ndarray of d loss / d weight; no update."""
        backend = keras.backend.backend()
        with floatx(self.dtype):
            grads = getattr(self, f"gradients_{backend}")(self.inputs(x, state), np.asarray(y, dtype=np.int32))
        return {name: np.array(ops.convert_to_numpy(g)) for name, g in zip(self.params, grads)}

    def gradients_tensorflow(self, inputs, y):
        import tensorflow as tf

        variables = list(self.params.values())
        with tf.GradientTape() as tape:  # records the forward, as torch's autograd does
            loss = self.loss_fn(y, self.scorer(inputs))
        return [tf.convert_to_tensor(g) for g in tape.gradient(loss, variables)]  # dense, not IndexedSlices

    def gradients_jax(self, inputs, y):
        import jax

        model = self.scorer
        non_trainable = [v.value for v in model.non_trainable_variables]

        def loss(trainable):  # a pure function of the weights: what jax.grad differentiates
            logits, _ = model.stateless_call(trainable, non_trainable, inputs)
            return self.loss_fn(y, logits)

        grads = jax.grad(loss)([v.value for v in model.trainable_variables])
        by_variable = {id(v): g for v, g in zip(model.trainable_variables, grads)}
        return [by_variable[id(p)] for p in self.params.values()]

    def gradients_torch(self, inputs, y):
        import torch

        loss = self.loss_fn(y, self.scorer(inputs))
        return torch.autograd.grad(loss, [p.value for p in self.params.values()])  # no .grad left behind

    # --- train step
    def train_step(self, x, y):
        """One optimizer update from the carried state (clipped by global norm when clip_norm > 0,
        by value when clip_value > 0); returns the loss before it and carries the new state
        (truncated BPTT); with target "last" every call starts from zeros."""
        if self.config.target == "last":
            self.reset_state()  # many-to-one: every window from a zero state, nothing carried
        with floatx(self.dtype):  # see inputs()
            return float(self.trainer.train_on_batch(np.asarray(x, dtype=np.int32), np.asarray(y, dtype=np.int32)))

    def get_training_state(self):
        """What exact resume needs beyond the weights (common/checkpoint.py): dict name -> np.ndarray,
        the optimizer's state ("optim.m/lstm.0.W_x", "optim.v/...", "optim.sum/..." for Adagrad,
        "optim.step") and the carried state ("state.h/0", "state.c/0", ...), interchange layout."""
        slots = {"sgd": {}, "adagrad": {"sum": "_accumulators"}, "adam": {"m": "_momentums", "v": "_velocities"}}[self.config.optimizer]
        if not self.optimizer.built:  # built at the first step: before it, zeros
            self.optimizer.build(self.trainer.trainable_variables)
        tensors = {}
        for name, p in self.params.items():
            for slot, key in slots.items():  # each slot variable sits at its weight's index
                tensors[f"optim.{slot}/{name}"] = np.array(ops.convert_to_numpy(
                    getattr(self.optimizer, key)[self.optimizer._get_variable_index(p)]))
        if self.config.optimizer == "adam":
            tensors["optim.step"] = np.array(int(ops.convert_to_numpy(self.optimizer.iterations)), np.int64)
        for l, (h, c) in enumerate(self.state):
            tensors[f"state.h/{l}"], tensors[f"state.c/{l}"] = np.array(h), np.array(c)
        return tensors

    def set_training_state(self, tensors):
        """The inverse of get_training_state; a missing, extra or misshaped tensor is a CheckpointError."""
        check_training_state(tensors, self.config)
        slots = {"sgd": {}, "adagrad": {"sum": "_accumulators"}, "adam": {"m": "_momentums", "v": "_velocities"}}[self.config.optimizer]
        if not self.optimizer.built:
            self.optimizer.build(self.trainer.trainable_variables)
        for name, p in self.params.items():
            for slot, key in slots.items():
                getattr(self.optimizer, key)[self.optimizer._get_variable_index(p)].assign(
                    np.asarray(tensors[f"optim.{slot}/{name}"], dtype=self.dtype))
        if self.config.optimizer == "adam":
            self.optimizer.iterations.assign(int(tensors["optim.step"]))
        for s, value in zip(self.trainer.carried, (tensors[f"state.{hc}/{l}"] for l in range(self.config.num_layers) for hc in "hc")):
            s.assign(np.asarray(value, dtype=self.dtype))
