"""Keras on TensorFlow, tuned (path "fast"): the gate equations of keras_impl/model.py's cell in
a tf.while_loop under XLA, TensorFlow backend only. What makes it fast: the whole step is one
graph. Forward, loss, tf.GradientTape, clipping and the optimizer update are traced once per
input shape into one tf.function compiled by XLA; W_h is read once before the loop; h is written
with write_row; tensors stay in TensorFlow between steps, and the carried state, returned by that
function outside any tape, is detached by construction. Measured figures: the README's "The
lesson and the tuned code" and benchmarks/levers.py.

    model = CharLSTM(config, init_weights(config), path="fast")   # KERAS_BACKEND=tensorflow
    loss = model.train_step(x, y)                                   # x, y: int (B, T)
    logits, state = model.forward(x)                                # np (B, T, V), [(h, c)] per layer
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import ops  # noqa: E402

from common.errors import ConfigError  # noqa: E402
from common.weights import check_weights  # noqa: E402
from keras_impl import model as lesson  # noqa: E402
from keras_impl import plumbing  # noqa: E402
from keras_impl.plumbing import floatx  # noqa: E402

PATHS = ("fast",)


# --- helpers
# the optimizer, the graph compiler's switch, the way out of a sparse gradient, and a loop output
# written without copies

# XLA (tf.function(jit_compile=True)) on the train step: a documented choice (lever "XLA on the
# cell path's train step" in benchmarks/levers.py, which `make bench-levers` measures). XLA keeps
# float64 exact (the float64 tests pass with it). `CharLSTM(..., jit_compile=False)` turns it off.
# Tried and left: keras.ops.scan for the loop (XLA
# cannot compile it), the T steps unrolled in python (slow to compile and to run),
# keras.layers.LSTM(unroll=True), a custom gradient giving dz @ W_h^T from a transpose made once
# before the loop (no faster: XLA transposes W_h at every step for it), one tanh over all four
# gates (no faster).
JIT_COMPILE = {"fast": True}


def make_optimizer(config):
    """The lesson's optimizer (keras_impl/model.py: Keras' own, configured to numpy_impl.optim's
    formula "keras", clipping inside it), made in config.dtype: the learning rate lives in a variable
    of keras' floatx, and a float64 model must not step with its rate rounded to float32."""
    with floatx(config.dtype):
        return lesson.make_optimizer(config)


def dense(grads):
    """The row gather's gradient is sparse (tf.IndexedSlices): every gradient as a dense tensor."""
    return [tf.convert_to_tensor(g) for g in grads]


@tf.custom_gradient
def write_row(rows, t, row):
    """`rows` with rows[t] = row, for a loop that writes each row of a zeros tensor once.

    What it buys: the gradient hands d rows on untouched and takes d row = d rows[t]. The
    gradient of tf.TensorArray.write also zeroes d rows[t] after reading it; under XLA that read,
    then write, of a buffer carried through the loop costs two copies of the whole (T, B, H)
    buffer every step (2 x 2 MB at the reference config, 512 MB a train step; lever "h written
    with write_row" in benchmarks/levers.py). Leaving d rows[t] in
    place is exact here: row t is written once, and the gradient of the zeros the loop starts
    from is never used.
    """
    def grad(d_rows):
        return d_rows, None, d_rows[t]

    return tf.tensor_scatter_nd_update(rows, tf.reshape(t, (1, 1)), row[None]), grad


def hard_sigmoid(z):
    """Keras 3's hard sigmoid, relu6(z + 3) / 6, as ops.hard_sigmoid computes it on every backend;
    written out because on torch ops.hard_sigmoid is F.hardsigmoid, whose float64 gradient uses a
    float32 1/6 (torch_impl/model.py)."""
    return ops.relu6(z + 3) / 6


# the activation of the i, f and o gates, config.recurrent_activation (g keeps tanh)
RECURRENT_ACTIVATIONS = {"sigmoid": ops.sigmoid, "hard_sigmoid": hard_sigmoid}


# --- layer over time
# One LSTM layer: gates i, f, g, o stacked along the last axis (B, 4H)
#   z_t = x_t @ W_x + h_{t-1} @ W_h + b ;  c_t = f * c_{t-1} + i * g ;  h_t = o * tanh(c_t)
# (numpy_impl/fast.py's lstm_forward and lstm_backward are its numpy counterpart; here autodiff gives the backward)

class LSTMLayer(keras.layers.Layer):
    """The gate equations with keras.ops, the Keras 3 way: weights made in build(), math in call().

    Called like keras.layers.LSTM(return_sequences=True, return_state=True):
    `hs, h, c = layer(x, initial_state=[h, c])`, x (B, T, in) floats, or (B, T) character ids
    for the first layer. Autodiff gives the backward pass.
    """

    def __init__(self, input_size, units, recurrent_activation="sigmoid", **kwargs):
        super().__init__(**kwargs)
        self.input_size, self.units = input_size, units
        self.sigma = RECURRENT_ACTIVATIONS[recurrent_activation]

    def build(self, input_shape=None):
        H = self.units
        self.W_x = self.add_weight(shape=(self.input_size, 4 * H), name="W_x")
        self.W_h = self.add_weight(shape=(H, 4 * H), name="W_h")
        self.b = self.add_weight(shape=(4 * H,), initializer="zeros", name="b")

    def call(self, x, initial_state):
        h, c = initial_state  # (B, H) each
        if "int" in str(x.dtype):
            xz = ops.take(self.W_x, x, axis=0)  # (B, T, 4H): one-hot x_t @ W_x is a row gather
        else:
            xz = ops.matmul(x, self.W_x)  # (B, T, 4H): every step in one product
        xz = xz + self.b  # TensorFlow tensors are immutable: no in place

        H, T = self.units, xz.shape[1]
        # Rows, h (B, H), as keras.layers.LSTM and the three lessons; numpy_impl/fast.py keeps columns,
        # h (H, B), for its BLAS. Here XLA picks the layouts: a columns version was tried and ran slower.

        # The loop over T is tf.while_loop, not keras.ops.scan: XLA cannot compile ops.scan on
        # TensorFlow (its carry lives in a TensorArray rewritten every step), nor keras.ops.fori_loop
        # writing into a preallocated (T, B, H) tensor (no gradient for XLA's dynamic-update-slice).
        # keras.ops has no loop that does both, hence tf here. xz is read through a TensorArray
        # (the gradient of xz[t] would be a whole (T, B, 4H) tensor every step); h goes to hs
        # through write_row (the TensorArray's write costs copies under XLA: see write_row).
        xz = tf.TensorArray(xz.dtype, size=T, element_shape=h.shape[:1] + (4 * H,)).unstack(
            ops.swapaxes(xz, 0, 1))  # T slices (B, 4H), time-major
        hs = tf.zeros((T,) + tuple(h.shape), h.dtype)  # (T, B, H), row t written at step t
        # The weight is read once, here: a variable read inside the loop is a new tensor at every
        # step, and the gradient of the loop keeps each one (64 copies of W_h, 64 MB per layer and
        # train step, at the reference config); a tensor from outside is the same at every step.
        W_h = tf.convert_to_tensor(self.W_h)

        def step(t, h, c, hs):  # one time step: (h, c) -> new (h, c), h written to hs[t]
            z = xz.read(t) + ops.matmul(h, W_h)  # (B, 4H)
            i, f, g, o = ops.split(z, 4, axis=-1)
            # (one ops.sigmoid over all of z and tanh on the g slice only measured no faster)
            i, f, g, o = self.sigma(i), self.sigma(f), ops.tanh(g), self.sigma(o)
            c = f * c + i * g
            h = o * ops.tanh(c)
            return t + 1, h, c, write_row(hs, t, h)

        _, h, c, hs = tf.while_loop(lambda t, *_: t < T, step, (0, h, c, hs), maximum_iterations=T)
        return ops.swapaxes(hs, 0, 1), h, c  # (B, T, H), (B, H), (B, H)


# --- model
class CharLSTM:
    """L stacked LSTM layers of H units and a dense head to V logits, trained with keras.optimizers."""

    def __init__(self, config, weights, path="fast", jit_compile=None):
        if path not in PATHS:
            raise ConfigError(f"keras_impl.fast has only the path 'fast', not {path!r}.")
        if keras.backend.backend() != "tensorflow":
            raise ConfigError(f"the keras path 'fast' runs on the tensorflow backend only, not "
                              f"{keras.backend.backend()}; use --backend tensorflow or the path layer or cell.")
        check_weights(weights, config)
        self.config, self.path = config, path
        jit_compile = JIT_COMPILE[path] if jit_compile is None else jit_compile  # XLA: see JIT_COMPILE
        self.dtype = config.dtype
        V, H, L = config.vocab_size, config.hidden_size, config.num_layers
        # params: interchange name -> keras Variable; Keras stores W as (in_l, 4H) too (README, the checkpoint table)
        self.lstms, self.params = [], {}
        for l in range(L):
            in_l = V if l == 0 else H
            lstm = LSTMLayer(in_l, H, config.recurrent_activation, dtype=self.dtype)
            lstm.build()
            W_x, W_h, b = lstm.W_x, lstm.W_h, lstm.b
            self.params.update({f"lstm.{l}.W_x": W_x, f"lstm.{l}.W_h": W_h, f"lstm.{l}.b": b})
            self.lstms.append(lstm)
        self.head = keras.layers.Dense(V, dtype=self.dtype)
        self.head.build((None, H))
        self.params["head.W"], self.params["head.b"] = self.head.kernel, self.head.bias
        for name, p in self.params.items():
            p.assign(np.asarray(weights[name], dtype=self.dtype))
        self.variables = list(self.params.values())
        self.optimizer = make_optimizer(config)  # clipping included: global_clipnorm
        self.optimizer.build(self.variables)  # its slots (m, v, accumulators) in config.dtype
        # one graph per input shape; `traces` counts tracings (the python body runs only then)
        self.graphs = {"forward": tf.function(self.forward_graph), "evaluate": tf.function(self.evaluate_graph),
                       "gradients": tf.function(self.gradients_graph),
                       "train_step": tf.function(self.train_step_graph, jit_compile=jit_compile)}
        self.traces = dict.fromkeys(self.graphs, 0)
        self.reset_state()

    def get_weights(self):
        """The weights in the interchange layout: dict name -> np.ndarray (copies), config.dtype."""
        return {name: np.array(p.numpy()) for name, p in self.params.items()}

    def reset_state(self):
        """Zero the state carried from one train_step to the next (a new epoch)."""
        self.state = self.zero_state(self.config.batch_size)

    def zero_state(self, B):
        H = self.config.hidden_size
        return [(tf.zeros((B, H), self.dtype), tf.zeros((B, H), self.dtype)) for _ in range(self.config.num_layers)]

    def to_tensors(self, x, state):
        """A graph takes tensors: x as an int tensor, state [(h, c)] in config.dtype (zeros for None)."""
        x = tf.convert_to_tensor(x)
        B, T = x.shape
        if state is None:
            state = self.zero_state(B)
        state = [(tf.convert_to_tensor(h, self.dtype), tf.convert_to_tensor(c, self.dtype)) for h, c in state]
        return x, state

    # --- forward
    def run(self, x, state, masks=None):
        """Forward, inside a graph: logits (B, T, V) and the new state [(h, c)] per layer.
        masks: common/dropout.py's [(B, T, H)] per layer, multiplying each layer's output; None: none."""
        hs = x  # (B, T) ids: layer 0 gathers rows of W_x (one-hot x_t @ W_x)
        new_state = []
        for l, (h, c) in enumerate(state):
            hs, h, c = self.lstms[l](hs, initial_state=[h, c])  # hs (B, T, H): keras layers are batch-major
            if masks is not None:
                hs = hs * masks[l]  # dropout on the input of layer l + 1 or the head
            new_state.append((h, c))
        logits = self.head(hs)  # (B, T, V)
        return logits, new_state

    # --- loss
    def loss(self, x, y, state, masks=None):
        """Mean cross-entropy over all B * T positions (config.target "all") or the B last ones
        ("last", y (B, 1)): a tensor the tape can differentiate, and the new state."""
        logits, new_state = self.run(x, state, masks)
        if self.config.target == "last":
            logits = logits[:, -1:]  # (B, 1, V): many-to-one, the loss sees the last position only
        loss = ops.mean(ops.sparse_categorical_crossentropy(y, logits, from_logits=True))
        return loss, new_state

    # Each public method below calls a tf.function; its graph, traced once per input shape from the
    # python body after it, does the work (forward, loss, tape, optimizer) without leaving TensorFlow.
    def forward(self, x, state=None):
        """Logits np (B, T, V) in config.dtype and the new state [(h, c)] per layer; no update."""
        logits, new_state = self.graphs["forward"](*self.to_tensors(x, state))
        return logits.numpy(), [(h.numpy(), c.numpy()) for h, c in new_state]

    def forward_graph(self, x, state):
        self.traces["forward"] += 1
        return self.run(x, state)

    def evaluate(self, x, y, state=None):
        """Mean cross-entropy over the scored positions (see loss), a python float; no update."""
        x, state = self.to_tensors(x, state)
        return float(self.graphs["evaluate"](x, tf.convert_to_tensor(y), state))

    def evaluate_graph(self, x, y, state):
        self.traces["evaluate"] += 1
        return self.loss(x, y, state)[0]

    # --- gradients
    def gradients(self, x, y, state=None, masks=None):
        """dict interchange name -> np.ndarray of d loss / d weight; no update. masks: as train_step's."""
        x, state = self.to_tensors(x, state)
        grads = self.graphs["gradients"](x, tf.convert_to_tensor(y), state, *self.mask_tensors(masks))
        return {name: g.numpy() for name, g in zip(self.params, grads)}

    def mask_tensors(self, masks):
        """The dropout masks as tensors, passed to a graph as its trailing arguments (none: no dropout)."""
        return [] if masks is None else [tf.convert_to_tensor(m, self.dtype) for m in masks]

    def gradients_graph(self, x, y, state, *masks):
        self.traces["gradients"] += 1
        with tf.GradientTape() as tape:  # records the forward, as torch's autograd does
            loss, _ = self.loss(x, y, state, list(masks) or None)
        return dense(tape.gradient(loss, self.variables))

    # --- train step
    def train_step(self, x, y, masks=None, learning_rate=None):
        """One optimizer update from the carried state (clipped by global norm when clip_norm > 0,
        by value when clip_value > 0); returns the loss before it and carries the new state
        (truncated BPTT); with target "last" every call starts from zeros.
        masks: common/dropout.py's dropout masks; learning_rate: this step's (common/schedule.py)."""
        if self.config.target == "last":
            self.reset_state()  # many-to-one: every window from a zero state, nothing carried
        if learning_rate is not None:
            self.optimizer.learning_rate = learning_rate  # assigned to its variable, which the graph reads
        loss, self.state = self.graphs["train_step"](tf.convert_to_tensor(x), tf.convert_to_tensor(y), self.state,
                                                     *self.mask_tensors(masks))
        return float(loss)

    def train_step_graph(self, x, y, state, *masks):
        self.traces["train_step"] += 1
        with tf.GradientTape() as tape:
            loss, new_state = self.loss(x, y, state, list(masks) or None)
        grads = dense(tape.gradient(loss, self.variables))
        self.optimizer.apply(grads, self.variables)  # clips, then steps
        return loss, new_state  # out of the graph no tape follows new_state: detached by construction

    def get_training_state(self):
        """What exact resume needs beyond the weights (common/checkpoint.py): dict name -> np.ndarray."""
        return plumbing.get_training_state(self)  # the lesson's, keras_impl/plumbing.py

    def set_training_state(self, tensors):
        """The inverse of get_training_state; a missing, extra or misshaped tensor is a CheckpointError."""
        self.state = [(tf.constant(h, self.dtype), tf.constant(c, self.dtype))
                      for h, c in plumbing.set_training_state(self, tensors)]
