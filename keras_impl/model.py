"""Keras 3 character-level LSTM: keras.layers.LSTM (path="layer") or the gate equations in a keras.layers.Layer
of our own inside keras.layers.RNN (path="cell"). What matters in Keras: a keras.Model subclass, compiled with
an optimizer, trained with train_on_batch; one file on the TensorFlow, JAX and PyTorch backends (KERAS_BACKEND).

    model = CharLSTM(config)                            # path: the first of PATHS unless given
    loss = model.train_batch(x, y)                      # x, y: int (B, T)
    logits, state = model({"x": x, "state": state})     # (B, T, V), [(h, c)] per layer
"""

import numpy as np

# plumbing.py beside this file before keras: it sets KERAS_BACKEND and JAX's 64-bit mode
from . import plumbing
import keras
from keras import ops

PATHS = ("layer", "cell")


# --- helpers
# keras helpers: the library's sigmoid and tanh, hard_sigmoid written out, and the optimizer
sigmoid, tanh = ops.sigmoid, ops.tanh


def hard_sigmoid(z):
    """Keras 3's hard sigmoid, relu6(z + 3) / 6: 0 up to z = -3, 1 from z = 3, a line between.
    Written out in all three: torch's F.hardsigmoid (Keras' on torch) scales its gradient by a float32 1/6."""
    return ops.relu6(z + 3) / 6


# the activation of the i, f and o gates, config.recurrent_activation (g keeps tanh)
RECURRENT_ACTIVATIONS = {"sigmoid": sigmoid, "hard_sigmoid": hard_sigmoid}


def make_optimizer(config):
    """keras.optimizers' own optimizer for config.optimizer, on numpy_impl.optim's formulas "keras"
    (numpy_impl/optim.py FORMULAS: Keras 3 puts Adam's and Adagrad's eps elsewhere than torch);
    clipping is inside it, by global norm or by value, one at most. Make it inside plumbing.floatx(dtype)."""
    clip = {"global_clipnorm": config.clip_norm or None, "clipvalue": config.clip_value or None}
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(config.learning_rate, **clip)
    if config.optimizer == "adagrad":
        return keras.optimizers.Adagrad(config.learning_rate, initial_accumulator_value=0.0, epsilon=1e-10, **clip)
    # betas as numpy float64: ops.cast takes a python float through float32 (0.999 -> 0.99900001)
    return keras.optimizers.Adam(config.learning_rate, beta_1=np.float64(0.9), beta_2=np.float64(0.999),
                                 epsilon=1e-8, **clip)


# --- step
# One time step of one layer, in rows like the interface: h, c (B, H); gates i, f, g, o stacked
# along the last axis of z (B, 4H):
#   z = x_t @ W_x + h_prev @ W_h + b ;  c = f * c_prev + i * g ;  h = o * tanh(c)
# (state_size tells keras.layers.RNN what to carry; keras.ops only, so that every backend runs it)

class LSTMCell(keras.layers.Layer):
    """One step. x_t (B, D); h_prev, c_prev (B, H); W_x (D, 4H), W_h (H, 4H), b (4H,).

    Returns h, c (B, H); W_x, W_h, b are made here and filled by CharLSTM.
    """

    def __init__(self, input_size, hidden_size, dtype, recurrent_activation="sigmoid"):
        super().__init__(dtype=dtype)
        self.sigma = RECURRENT_ACTIVATIONS[recurrent_activation]
        self.W_x = self.add_weight(shape=(input_size, 4 * hidden_size), name="W_x")
        self.W_h = self.add_weight(shape=(hidden_size, 4 * hidden_size), name="W_h")
        self.b = self.add_weight(shape=(4 * hidden_size,), name="b")
        self.state_size, self.output_size = [hidden_size, hidden_size], hidden_size  # h, c (B, H); h

    def call(self, x_t, state):
        h_prev, c_prev = state
        H = h_prev.shape[1]
        sigma = self.sigma
        z = x_t @ self.W_x + h_prev @ self.W_h + self.b  # (B, 4H)
        i = sigma(z[:, :H])
        f = sigma(z[:, H:2 * H])
        g = tanh(z[:, 2 * H:3 * H])
        o = sigma(z[:, 3 * H:])
        c = f * c_prev + i * g
        tanh_c = tanh(c)
        h = o * tanh_c
        return h, [h, c]  # the output and the new state, as keras.layers.RNN wants them


# --- layer over time

def lstm_layer(path, input_size, hidden_size, dtype, recurrent_activation="sigmoid"):
    """One layer over T steps. xs (B, T, D) the inputs; h, c (B, H) the initial state.

    Returns hs (B, T, H) with hs[:, t] = h_t, and the last h, c.
    Path "layer" is keras.layers.LSTM, the library's own; path "cell" is LSTMCell in keras.layers.RNN,
    which runs the loop over time on each backend its own way (tf.while_loop, jax.lax.scan, python).
    """
    if path == "layer":  # our hard_sigmoid, not the string (ops.hard_sigmoid: see helpers)
        activation = hard_sigmoid if recurrent_activation == "hard_sigmoid" else recurrent_activation
        return keras.layers.LSTM(hidden_size, recurrent_activation=activation,
                                 return_sequences=True, return_state=True, dtype=dtype)
    return keras.layers.RNN(LSTMCell(input_size, hidden_size, dtype, recurrent_activation),
                            return_sequences=True, return_state=True, dtype=dtype)


# --- model
class CharLSTM(keras.Model):
    """L stacked LSTM layers of H units and a dense head to V logits, trained with compile and train_on_batch."""

    def __init__(self, config, path="layer", jit_compile="auto"):
        super().__init__(dtype=config.dtype)
        self.config = config
        V, H, L = config.vocab_size, config.hidden_size, config.num_layers
        self.lstms = []  # one layer object per layer: dropout goes between them (keras.Model has its own .layers)
        for l in range(L):
            lstm = lstm_layer(path, V if l == 0 else H, H, self.dtype, config.recurrent_activation)
            self.lstms.append(lstm)
        self.head = keras.layers.Dense(V, dtype=config.dtype)  # the weights exist after a first call
        self.carried = plumbing.CarriedState(config)  # the state train_on_batch carries (truncated BPTT)
        self.compile(optimizer=make_optimizer(config), jit_compile=jit_compile)  # keras.optimizers: SGD, Adagrad, Adam

    def reset_state(self):
        """Zero the state carried from one train_step to the next (a new epoch)."""
        self.carried.reset()  # plumbing.CarriedState: the state lives in variables

    def zero_state(self, B):
        H = self.config.hidden_size
        return [(ops.zeros((B, H), self.dtype), ops.zeros((B, H), self.dtype)) for _ in range(self.config.num_layers)]

    # --- forward
    def call(self, inputs):
        """Forward: logits (B, T, V) and the new state [(h, c)] per layer; inputs: {"x", "state", "masks"}.
        masks: common/dropout.py's [(B, T, H)] per layer, multiplying each layer's output; None: none."""
        x, state, masks = inputs["x"], inputs.get("state"), inputs.get("masks")
        V = self.config.vocab_size
        if state is None:
            state = self.carried.read()  # train_on_batch's: the state the last step left, replaced below
        hs = ops.one_hot(x, V, dtype=self.dtype)  # (B, T, V): the input of layer 0, one-hot
        new_state = []
        for l, (h, c) in enumerate(state):
            hs, h, c = self.lstms[l](hs, initial_state=[h, c])  # (B, T, H): the input of layer l + 1
            if masks is not None:
                hs = hs * masks[l]  # dropout on the input of layer l + 1 or the head
            new_state.append((h, c))
        logits = self.head(hs)  # (B, T, V)
        if inputs.get("state") is None:
            self.carried.write(new_state)  # what the next train_on_batch starts from
        return logits, new_state

    # --- loss
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Mean cross-entropy over all B * T positions (config.target "all") or the B last ones
        ("last", y (B, 1)), from call's logits and new state: what train_on_batch and test_on_batch use."""
        logits, _ = y_pred
        if self.config.target == "last":  # many-to-one: the loss sees logits[:, -1:] only
            logits = logits[:, -1:]  # (B, 1, V)
        return ops.mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))

    # --- gradients
    # Keras 3 differentiates only inside train_on_batch; outside it, one small function per backend.
    def gradients(self, x, y, state=None, masks=None):
        """d loss / d weight, backend tensors in the order of trainable_variables; no update. masks: as call's."""
        inputs = {"x": x, "state": self.zero_state(x.shape[0]) if state is None else state, "masks": masks}
        return getattr(self, f"gradients_{keras.backend.backend()}")(inputs, y)

    def gradients_tensorflow(self, inputs, y):
        import tensorflow as tf
        with tf.GradientTape() as tape:  # records the forward, as torch's autograd does
            loss = self.compute_loss(y=y, y_pred=self(inputs))
        return tape.gradient(loss, self.trainable_variables)

    def gradients_jax(self, inputs, y):
        import jax
        seeds = [v.value for v in self.non_trainable_variables]  # keras.layers.LSTM's seed generator, the carried state

        def loss(weights):  # compute_loss as a pure function of the weights: what jax.grad differentiates
            return self.compute_loss(y=y, y_pred=self.stateless_call(weights, seeds, inputs)[0])
        return jax.grad(loss)([p.value for p in self.trainable_variables])

    def gradients_torch(self, inputs, y):
        import torch
        loss = self.compute_loss(y=y, y_pred=self(inputs))
        return torch.autograd.grad(loss, [p.value for p in self.trainable_variables])  # no .grad left behind

    # --- train step
    def train_batch(self, x, y, masks=None):
        """One optimizer update from the carried state (clipped by global norm when clip_norm > 0,
        by value when clip_value > 0); returns the loss before it and carries the new state
        (truncated BPTT); with target "last" every call starts from zeros. masks: the step's
        dropout masks (common/dropout.py)."""
        if self.config.target == "last":
            self.reset_state()  # many-to-one: every window from a zero state, nothing carried
        return self.train_on_batch({"x": x, "masks": masks}, y)  # call, compute_loss, gradients, update
