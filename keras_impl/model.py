"""Keras 3 character-level LSTM on the TensorFlow backend: keras.layers.LSTM or the cell written out.

The difference that matters here: the model is a graph. The training step (forward, loss,
tf.GradientTape, clipping, optimizer update) is traced once per input shape into one
tf.function, optionally compiled by XLA, and the arrays stay tensors between steps. The
LSTM state carried between steps is a plain tensor returned by that function: outside the
tape, so it is detached by construction.

    model = CharLSTM(Config(), init_weights(Config()), path="layer")   # or path="cell"
    loss = model.train_step(x, y)              # x, y int (B, T)
    logits, state = model.forward(x)          # np.ndarray (B, T, V), [(h, c)] per layer
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import ops  # noqa: E402

from common.errors import ConfigError  # noqa: E402
from common.weights import check_weights  # noqa: E402

PATHS = ("layer", "cell")

# XLA (tf.function(jit_compile=True)) stays off: a documented choice, measured at V=65, H=256,
# L=2, B=32, T=64, float32, Adam, 2 threads on a shared 2-core CPU. Layer path: ~13,600 chars/s
# with XLA against ~12,900 without (within the noise) but 8.5 s to the first step instead of
# 2.3 s; unroll=True was slower either way. Cell path: keras.ops.scan runs ~1.3x faster than a
# python loop unrolled at trace time (which XLA made 3x slower, 34 s to compile), and XLA cannot
# compile scan's TensorArray loop at all. `CharLSTM(..., jit_compile=True)` tries the layer path.
JIT_COMPILE = False


# ---------------------------------------------------------------------------------------------
# One LSTM layer: gates i, f, g, o stacked along the last axis (B, 4H)
#   z_t = x_t @ W_x + h_{t-1} @ W_h + b ;  c_t = f * c_{t-1} + i * g ;  h_t = o * tanh(c_t)
# (numpy: lstm_forward / lstm_backward; torch and keras: the explicit-cell code)

class LSTMLayer(keras.layers.Layer):
    """The gate equations with keras.ops, the Keras 3 way: weights made in build(), math in call().

    Called like keras.layers.LSTM(return_sequences=True, return_state=True):
    `hs, h, c = layer(x, initial_state=[h, c])`, x (B, T, in) floats, or (B, T) character ids
    for the first layer (one-hot @ W_x is a row gather of W_x). Autodiff gives the backward pass.
    """

    def __init__(self, input_size, units, **kwargs):
        super().__init__(**kwargs)
        self.input_size, self.units = input_size, units

    def build(self, input_shape=None):
        H = self.units
        self.W_x = self.add_weight(shape=(self.input_size, 4 * H), name="W_x")
        self.W_h = self.add_weight(shape=(H, 4 * H), name="W_h")
        self.b = self.add_weight(shape=(4 * H,), initializer="zeros", name="b")

    def call(self, x, initial_state):
        h, c = initial_state  # (B, H) each
        if "int" in str(x.dtype):
            z_x = ops.take(self.W_x, x, axis=0) + self.b  # (B, T, 4H) one-hot @ W_x as a gather
        else:
            z_x = ops.matmul(x, self.W_x) + self.b  # (B, T, 4H) every timestep in one matmul

        def step(carry, z_xt):  # one timestep: (h, c) and z_x[:, t] (B, 4H) -> new (h, c)
            h, c = carry
            z = z_xt + ops.matmul(h, self.W_h)  # (B, 4H)
            i, f, g, o = ops.split(z, 4, axis=-1)
            i, f, g, o = ops.sigmoid(i), ops.sigmoid(f), ops.tanh(g), ops.sigmoid(o)
            c = f * c + i * g
            h = o * ops.tanh(c)
            return (h, c), (h, c)  # ops.scan on TensorFlow stacks outputs shaped like the carry

        (h, c), (hs, _) = ops.scan(step, (h, c), ops.moveaxis(z_x, 1, 0))  # a loop over T
        return ops.moveaxis(hs, 0, 1), h, c  # (B, T, H), (B, H), (B, H)


def make_optimizer(config):
    """Keras' own optimizer for config.optimizer, clipping by global norm when clip_norm > 0.

    Keras 3's formulas (keras/src/optimizers) differ from numpy_impl's default ("pytorch"):
      Adam:    alpha_t = lr * sqrt(1 - b2^t) / (1 - b1^t);  w -= alpha_t * m / (sqrt(v) + eps)
               (eps outside the bias correction; torch: lr * m_hat / (sqrt(v_hat) + eps))
      Adagrad: s += g^2;  w -= lr * g / sqrt(s + eps)      (torch: lr * g / (sqrt(s) + eps))
      global_clipnorm: g *= min(1, clip_norm / norm), norm = sqrt(sum of all g^2)
               (torch: clip_norm / (norm + 1e-6) when that is < 1)
    numpy_impl.optim's formula="keras" copies these.
    """
    clip = config.clip_norm or None
    # The learning rate lives in a variable of keras' floatx: make it config.dtype, or a
    # float64 model would step with lr rounded to float32.
    floatx = keras.config.floatx()
    keras.config.set_floatx(config.dtype)
    try:
        if config.optimizer == "sgd":
            return keras.optimizers.SGD(config.learning_rate, global_clipnorm=clip)
        if config.optimizer == "adagrad":
            return keras.optimizers.Adagrad(config.learning_rate, initial_accumulator_value=0.0,
                                            epsilon=1e-10, global_clipnorm=clip)
        # betas as numpy float64: Adam casts them to the variable's dtype with tf.cast, which
        # takes a python float through float32 (0.999 -> 0.99900001) even in a float64 model
        return keras.optimizers.Adam(config.learning_rate, beta_1=np.float64(0.9), beta_2=np.float64(0.999),
                                     epsilon=1e-8, global_clipnorm=clip)
    finally:
        keras.config.set_floatx(floatx)


# ---------------------------------------------------------------------------------------------
class CharLSTM:
    """Embedding by one-hot, L stacked LSTM layers of H units, a Dense head to V logits."""

    def __init__(self, config, weights, path="layer", jit_compile=JIT_COMPILE):
        check_weights(weights, config)
        if path not in PATHS:
            raise ConfigError(f"keras has no path {path!r}; choose one of {', '.join(PATHS)}.")
        self.config, self.path = config, path
        V, H, dtype = config.vocab_size, config.hidden_size, config.dtype
        self.lstms, self.params = [], {}
        for l in range(config.num_layers):
            in_l = V if l == 0 else H
            if path == "layer":
                lstm = keras.layers.LSTM(H, return_sequences=True, return_state=True, dtype=dtype)
                lstm.build((None, None, in_l))
                cell = lstm.cell
                self.params.update({f"lstm.{l}.W_x": cell.kernel, f"lstm.{l}.W_h": cell.recurrent_kernel,
                                    f"lstm.{l}.b": cell.bias})
            else:
                lstm = LSTMLayer(in_l, H, dtype=dtype)
                lstm.build()
                self.params.update({f"lstm.{l}.W_x": lstm.W_x, f"lstm.{l}.W_h": lstm.W_h,
                                    f"lstm.{l}.b": lstm.b})
            self.lstms.append(lstm)
        self.head = keras.layers.Dense(V, dtype=dtype)
        self.head.build((None, H))
        self.params.update({"head.W": self.head.kernel, "head.b": self.head.bias})
        for name, w in weights.items():
            self.params[name].assign(np.asarray(w, dtype=dtype))
        self.variables = list(self.params.values())
        self.optimizer = make_optimizer(config)
        self.optimizer.build(self.variables)  # slots (m, v, accumulators) in config.dtype

        # one graph per input shape; `traces` counts tracings (python runs only while tracing)
        self.traces = {"forward": 0, "evaluate": 0, "gradients": 0, "train_step": 0}
        self._forward = tf.function(self._forward_graph)
        self._evaluate = tf.function(self._evaluate_graph)
        self._gradients = tf.function(self._gradients_graph)
        self._train_step = tf.function(self._train_step_graph, jit_compile=jit_compile)
        self.state = None
        self.reset_state()

    def get_weights(self):
        return {name: v.numpy() for name, v in self.params.items()}

    def reset_state(self):
        B, H = self.config.batch_size, self.config.hidden_size
        zeros = tf.zeros((B, H), dtype=self.config.dtype)
        self.state = [(zeros, zeros) for _ in self.lstms]

    def forward(self, x, state=None):
        logits, state = self._forward(*self._inputs(x, state))
        return logits.numpy(), [(h.numpy(), c.numpy()) for h, c in state]

    def evaluate(self, x, y, state=None):
        x, state = self._inputs(x, state)
        return float(self._evaluate(x, tf.convert_to_tensor(y), state))

    def gradients(self, x, y, state=None):
        x, state = self._inputs(x, state)
        grads = self._gradients(x, tf.convert_to_tensor(y), state)
        return {name: g.numpy() for name, g in zip(self.params, grads)}

    def train_step(self, x, y):
        loss, self.state = self._train_step(tf.convert_to_tensor(x), tf.convert_to_tensor(y), self.state)
        return float(loss)

    # -- inside the graphs --------------------------------------------------------------------
    def _inputs(self, x, state):
        """x as a tensor and state as a list of (h, c) tensors of config.dtype (zeros if None)."""
        x = tf.convert_to_tensor(x)
        if state is None:
            zeros = tf.zeros((x.shape[0], self.config.hidden_size), dtype=self.config.dtype)
            return x, [(zeros, zeros) for _ in self.lstms]
        return x, [(tf.convert_to_tensor(h, self.config.dtype), tf.convert_to_tensor(c, self.config.dtype))
                   for h, c in state]

    def _logits(self, x, state):
        """logits (B, T, V) and the new state [(h, c)] per layer."""
        if self.path == "layer":
            x = ops.one_hot(x, self.config.vocab_size, dtype=self.config.dtype)  # (B, T, V)
        new_state = []
        for lstm, (h, c) in zip(self.lstms, state):
            x, h, c = lstm(x, initial_state=[h, c])  # (B, T, H)
            new_state.append((h, c))
        return self.head(x), new_state

    def _loss(self, x, y, state):
        logits, state = self._logits(x, state)
        loss = ops.mean(ops.sparse_categorical_crossentropy(y, logits, from_logits=True))
        return loss, state

    def _forward_graph(self, x, state):
        self.traces["forward"] += 1
        return self._logits(x, state)

    def _evaluate_graph(self, x, y, state):
        self.traces["evaluate"] += 1
        return self._loss(x, y, state)[0]

    def _gradients_graph(self, x, y, state):
        self.traces["gradients"] += 1
        with tf.GradientTape() as tape:
            loss, _ = self._loss(x, y, state)
        # the row gather's gradient is sparse (IndexedSlices): make every gradient dense
        return [tf.convert_to_tensor(g) for g in tape.gradient(loss, self.variables)]

    def _train_step_graph(self, x, y, state):
        self.traces["train_step"] += 1
        with tf.GradientTape() as tape:
            loss, state = self._loss(x, y, state)
        grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, self.variables)]
        self.optimizer.apply(grads, self.variables)  # clips by global norm, then updates
        return loss, state
