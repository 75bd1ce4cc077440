"""Keras 3 character-level LSTM: keras.layers.LSTM (path="layer") or the gate equations in a
keras.layers.Layer of our own inside keras.layers.RNN (path="cell"). What matters in Keras: a
keras.Model built from layers, compiled with a loss and an optimizer, trained with train_on_batch;
the same file runs on the TensorFlow, JAX and PyTorch backends (KERAS_BACKEND, read at import).

    model = CharLSTM(config, init_weights(config))     # path: the first of PATHS unless given
    loss = model.train_step(x, y)                       # x, y: int (B, T)
    logits, state = model.forward(x)                    # np (B, T, V), [(h, c)] per layer
"""

import numpy as np

from common.errors import ConfigError
from common.weights import check_weights
from . import plumbing  # before keras: it sets KERAS_BACKEND and JAX's 64-bit mode
from .plumbing import floatx
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
    clipping is inside it, by global norm or by value, one at most. Make it inside floatx(dtype)."""
    clip = {"global_clipnorm": config.clip_norm or None, "clipvalue": config.clip_value or None}
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(config.learning_rate, **clip)
    if config.optimizer == "adagrad":
        return keras.optimizers.Adagrad(config.learning_rate, initial_accumulator_value=0.0, epsilon=1e-10, **clip)
    # betas as numpy float64: Adam casts them with ops.cast, which takes a python float through
    # float32 (0.999 -> 0.99900001) on TensorFlow and torch, even in a float64 model
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
class CharLSTM:
    """L stacked LSTM layers of H units and a dense head to V logits, trained with compile and train_on_batch."""

    def __init__(self, config, weights, path="layer", jit_compile="auto"):
        if path not in PATHS:
            raise ConfigError(f"keras has no path {path!r}; choose one of {', '.join(PATHS)}.")
        check_weights(weights, config)
        self.config, self.path = config, path
        self.dtype = config.dtype
        V, H, L = config.vocab_size, config.hidden_size, config.num_layers
        plumbing.keep_float64(self.dtype)  # float64 computed in float64 on every backend
        # params: interchange name -> keras variable, updated in place by the optimizer
        self.params = {}
        self.layers = []  # one object per layer: dropout goes between them
        for l in range(L):
            lstm = lstm_layer(path, V if l == 0 else H, H, self.dtype, config.recurrent_activation)
            lstm.build((None, None, V if l == 0 else H))  # a layer's weights exist once it is built
            self.layers.append(lstm)
            if path == "layer":  # keras.layers.LSTM's cell stores W as (in, 4H) too (DESIGN.md)
                W_x, W_h, b = lstm.cell.kernel, lstm.cell.recurrent_kernel, lstm.cell.bias
            else:
                W_x, W_h, b = lstm.cell.W_x, lstm.cell.W_h, lstm.cell.b
            self.params.update({f"lstm.{l}.W_x": W_x, f"lstm.{l}.W_h": W_h, f"lstm.{l}.b": b})
        self.head = keras.layers.Dense(V, dtype=self.dtype)
        self.head.build((None, H))
        self.params["head.W"], self.params["head.b"] = self.head.kernel, self.head.bias
        for name, p in self.params.items():
            p.assign(np.asarray(weights[name], dtype=self.dtype))
        # A keras.Model is run once on keras.Input placeholders. The state is an input and the new state
        # an output, as in the sampling model of Keras' char-rnn examples: any batch size, any state.
        x = keras.Input((None,), dtype="int32", name="x")  # (B, T) character ids
        state = [(keras.Input((H,), dtype=self.dtype, name=f"h{l}"), keras.Input((H,), dtype=self.dtype, name=f"c{l}"))
                 for l in range(L)]
        # with dropout, its masks are inputs too (common/dropout.py draws them): (B, T, H) per layer
        masks = [keras.Input((None, H), dtype=self.dtype, name=f"mask{l}") for l in range(L)] if config.dropout else None
        logits, new_state = self.run(x, state, masks)
        inputs = [x, *(s for hc in state for s in hc), *(masks or [])]  # x, h0, c0, h1, c1, ..., masks
        new_state = [s for hc in new_state for s in hc]  # h0, c0, h1, c1, ...
        scored = logits[:, -1:] if config.target == "last" else logits  # many-to-one: (B, 1, V)
        self.net = keras.Model(inputs, [logits, *new_state])  # forward
        self.scorer = keras.Model(inputs, scored)  # evaluate and gradients: the same layers
        self.trainer = plumbing.CarriedState(keras.Model(inputs, [scored, *new_state]), config.batch_size, H, L,
                                             dtype=self.dtype)  # train_step: the state carried in variables
        with floatx(self.dtype):
            self.loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)  # mean over B * T
            self.scorer.compile(loss=self.loss_fn, jit_compile=jit_compile)
            self.trainer.compile(optimizer=make_optimizer(config), loss=self.loss_fn, jit_compile=jit_compile)
        self.optimizer = self.trainer.optimizer  # keras.optimizers: SGD, Adagrad, Adam
        plumbing.check_dtype(self.params["head.b"], self.dtype)

    def get_weights(self):
        """The weights in the interchange layout: dict name -> np.ndarray (copies), config.dtype."""
        return {name: np.array(ops.convert_to_numpy(p)) for name, p in self.params.items()}

    def reset_state(self):
        """Zero the state carried from one train_step to the next (a new epoch)."""
        self.trainer.reset_state()  # the state lives in the trainer's variables

    @property
    def state(self):
        return self.trainer.state

    def zero_state(self, B):
        H = self.config.hidden_size
        return [(np.zeros((B, H), self.dtype), np.zeros((B, H), self.dtype)) for _ in range(self.config.num_layers)]

    # --- forward
    def run(self, x, state, masks=None):
        """Forward, on keras.Input placeholders: logits (B, T, V) and the new state [(h, c)] per layer.
        masks: common/dropout.py's [(B, T, H)] per layer, multiplying each layer's output; None: none."""
        V = self.config.vocab_size
        hs = ops.one_hot(x, V, dtype=self.dtype)  # (B, T, V): the input of layer 0, one-hot
        new_state = []
        for l, (h, c) in enumerate(state):
            hs, h, c = self.layers[l](hs, initial_state=[h, c])  # (B, T, H): the input of layer l + 1
            if masks is not None:
                hs = hs * masks[l]  # dropout on the input of layer l + 1 or the head
            new_state.append((h, c))
        logits = self.head(hs)  # (B, T, V)
        return logits, new_state

    def forward(self, x, state=None):
        """Logits np (B, T, V) in config.dtype and the new state [(h, c)] per layer; no update."""
        with floatx(self.dtype):  # float64 inputs stay float64 (plumbing.py beside this file)
            logits, *new_state = self.net.predict_on_batch(plumbing.model_inputs(self, x, state))
        return logits, list(zip(new_state[0::2], new_state[1::2]))

    # --- loss
    def loss(self, x, y, state, masks=None):
        """Mean cross-entropy over all B * T positions (config.target "all") or the B last ones
        ("last", y (B, 1)): the compiled loss on the scorer model, a tensor its backend can differentiate."""
        return self.loss_fn(np.asarray(y, dtype=np.int32), self.scorer(plumbing.model_inputs(self, x, state, masks)))

    def evaluate(self, x, y, state=None):
        """Mean cross-entropy over the scored positions (see loss), a python float; no update."""
        with floatx(self.dtype):
            return float(self.scorer.test_on_batch(plumbing.model_inputs(self, x, state), np.asarray(y, dtype=np.int32)))

    # --- gradients
    # Keras 3 differentiates only inside its own training step; a gradient outside it is the
    # backend's job: one small function per backend, each on the same model and loss.
    def gradients(self, x, y, state=None, masks=None):
        """dict interchange name -> np.ndarray of d loss / d weight; no update. masks: as train_step's."""
        with floatx(self.dtype):
            grads = getattr(self, f"gradients_{keras.backend.backend()}")(x, y, state, masks)
        return {name: np.array(ops.convert_to_numpy(g)) for name, g in zip(self.params, grads)}

    def gradients_tensorflow(self, x, y, state, masks):
        import tensorflow as tf

        with tf.GradientTape() as tape:  # records the forward, as torch's autograd does
            loss = self.loss(x, y, state, masks)
        return tape.gradient(loss, list(self.params.values()))

    def gradients_jax(self, x, y, state, masks):
        import jax

        inputs, y = plumbing.model_inputs(self, x, state, masks), np.asarray(y, dtype=np.int32)
        model = self.scorer  # its trainable_variables are params' values, in the same order
        seeds = [v.value for v in model.non_trainable_variables]  # keras.layers.LSTM's seed generator

        def loss(weights):  # self.loss as a pure function of the weights: what jax.grad differentiates
            return self.loss_fn(y, model.stateless_call(weights, seeds, inputs)[0])

        return jax.grad(loss)([p.value for p in self.params.values()])

    def gradients_torch(self, x, y, state, masks):
        import torch

        loss = self.loss(x, y, state, masks)
        return torch.autograd.grad(loss, [p.value for p in self.params.values()])  # no .grad left behind

    # --- train step
    def train_step(self, x, y, masks=None, learning_rate=None):
        """One optimizer update from the carried state (clipped by global norm when clip_norm > 0,
        by value when clip_value > 0); returns the loss before it and carries the new state
        (truncated BPTT); with target "last" every call starts from zeros. masks: the step's
        dropout masks, learning_rate: the step's rate (common/dropout.py, common/schedule.py)."""
        if self.config.target == "last":
            self.reset_state()  # many-to-one: every window from a zero state, nothing carried
        if learning_rate is not None:
            self.optimizer.learning_rate = learning_rate  # assigned to the variable the step reads
        with floatx(self.dtype):
            return float(self.trainer.train_on_batch(plumbing.train_inputs(self, x, masks), np.asarray(y, dtype=np.int32)))

    def get_training_state(self):
        """What exact resume needs beyond the weights (common/checkpoint.py): dict name -> np.ndarray."""
        return plumbing.get_training_state(self)  # plumbing.py beside this file

    def set_training_state(self, tensors):
        """The inverse of get_training_state; a missing, extra or misshaped tensor is a CheckpointError."""
        plumbing.set_training_state(self, tensors)
