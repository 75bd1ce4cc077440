"""numpy character-level LSTM with the backward pass written by hand (min-char-rnn, CS231n).
What matters in numpy: nothing records the forward pass, so each forward function returns a cache
of what it computed and its backward walks it in reverse, one chain-rule step per line.

    model = CharLSTM(config, common.weights.init_weights(config))    # path: the first of PATHS unless given
    loss = model.train_step(x, y)                       # x, y: int (B, T)
    logits, state = model.forward(x)                    # np (B, T, V), [(h, c)] per layer
"""

import numpy as np

from . import plumbing
from numpy_impl.optim import FORMULAS, clip_by_value, make_optimizer

PATHS = ("cell",)  # the tuned numpy, path "fast", is numpy_impl/fast.py


# --- helpers
# numpy helpers: what torch and keras take from their libraries (sigmoid, cross_entropy)
tanh = np.tanh


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def hard_sigmoid(z):
    """Keras 3's hard sigmoid, relu6(z + 3) / 6: 0 up to z = -3, 1 from z = 3, a line between.
    Written out in all three: torch's F.hardsigmoid (Keras' on torch) scales its gradient by a float32 1/6."""
    return np.clip(z + 3, 0, 6) / 6


# the activation of the i, f and o gates, config.recurrent_activation (g keeps tanh)
RECURRENT_ACTIVATIONS = {"sigmoid": sigmoid, "hard_sigmoid": hard_sigmoid}


def cross_entropy(logits, y):
    """Mean cross-entropy over all B * T positions of logits (B, T, V), y int (B, T), and its
    gradient dlogits (B, T, V) = (softmax - one-hot of y) / (B * T)."""
    B, T, V = logits.shape
    shifted = logits - logits.max(axis=-1, keepdims=True)  # stable: exp never overflows
    log_p = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))  # (B, T, V) log softmax
    b, t = np.arange(B)[:, None], np.arange(T)[None, :]  # (B, 1), (1, T): index every position
    loss = -log_p[b, t, y].mean()
    dlogits = np.exp(log_p)  # softmax
    dlogits[b, t, y] -= 1
    dlogits /= B * T
    return float(loss), dlogits


# --- step
# One time step of one layer, in rows like the interface: h, c (B, H); gates i, f, g, o stacked
# along the last axis of z (B, 4H):
#   z = x_t @ W_x + h_prev @ W_h + b ;  c = f * c_prev + i * g ;  h = o * tanh(c)
# (nothing records the forward: it returns a cache, and backward walks it, CS231n's lstm_step_backward)

class LSTMCell:
    """One step. x_t (B, D); h_prev, c_prev (B, H); W_x (D, 4H), W_h (H, 4H), b (4H,).

    Returns h, c (B, H); W_x, W_h, b are made here and filled by CharLSTM.
    """

    def __init__(self, input_size, hidden_size, dtype, recurrent_activation="sigmoid"):
        self.sigma = RECURRENT_ACTIVATIONS[recurrent_activation]
        self.W_x = np.empty((input_size, 4 * hidden_size), dtype=dtype)
        self.W_h = np.empty((hidden_size, 4 * hidden_size), dtype=dtype)
        self.b = np.empty((4 * hidden_size,), dtype=dtype)

    def forward(self, x_t, state):
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
        return h, c, (x_t, h_prev, c_prev, i, f, g, o, tanh_c)  # and the cache backward needs

    def backward(self, dh, dc, cache):
        """Back through one step. dh, dc (B, H): the gradient of the loss at this step's h and c.
        Returns dx (B, D), dh_prev, dc_prev (B, H), dW_x (D, 4H), dW_h (H, 4H), db (4H,)."""
        x_t, h_prev, c_prev, i, f, g, o, tanh_c = cache
        do = dh * tanh_c
        dc = dc + dh * o * (1 - tanh_c ** 2)  # c reaches the loss directly and through h = o * tanh(c)
        di = dc * g
        df = dc * c_prev
        dg = dc * i
        dc_prev = dc * f
        if self.sigma is hard_sigmoid:  # hard_sigmoid' = 1/6 inside (-3, 3), where 0 < gate < 1; 0 outside
            dz_i = di * ((0 < i) & (i < 1)) / 6
            dz_f = df * ((0 < f) & (f < 1)) / 6
            dz_o = do * ((0 < o) & (o < 1)) / 6
        else:  # sigmoid' = sigmoid * (1 - sigmoid)
            dz_i = di * i * (1 - i)
            dz_f = df * f * (1 - f)
            dz_o = do * o * (1 - o)
        dz_g = dg * (1 - g ** 2)  # tanh' = 1 - tanh^2
        dz = np.concatenate([dz_i, dz_f, dz_g, dz_o], axis=1)  # (B, 4H)
        dx = dz @ self.W_x.T
        dh_prev = dz @ self.W_h.T
        dW_x = x_t.T @ dz
        dW_h = h_prev.T @ dz
        db = dz.sum(axis=0)
        return dx, dh_prev, dc_prev, dW_x, dW_h, db


# --- layer over time

class LSTMLayer:
    """One layer over T steps. xs (B, T, D) the inputs; h, c (B, H) the initial state.

    Returns hs (B, T, H) with hs[:, t] = h_t, and the last h, c.
    """

    def __init__(self, input_size, hidden_size, dtype, recurrent_activation="sigmoid"):
        self.cell = LSTMCell(input_size, hidden_size, dtype, recurrent_activation)

    def forward(self, xs, state):
        h, c = state
        hs, caches = [], []
        for t in range(xs.shape[1]):
            h, c, cache = self.cell.forward(xs[:, t], (h, c))
            hs.append(h)
            caches.append(cache)
        return np.stack(hs, axis=1), h, c, caches  # and every step's cache, for backward

    def backward(self, dhs, caches):
        """Back through one layer, from the last step to the first. dhs (B, T, H): the gradient reaching
        each h_t from above (the head or the next layer). Returns dxs (B, T, D) and dW_x, dW_h, db summed
        over the steps. dh_next, dc_next start at zero: the loss does not see the final state."""
        B, T, H = dhs.shape
        dxs = np.zeros((B, T, self.cell.W_x.shape[0]), dtype=dhs.dtype)
        dW_x, dW_h, db = np.zeros_like(self.cell.W_x), np.zeros_like(self.cell.W_h), np.zeros_like(self.cell.b)
        dh_next = np.zeros((B, H), dtype=dhs.dtype)
        dc_next = np.zeros((B, H), dtype=dhs.dtype)
        for t in reversed(range(T)):
            dh = dhs[:, t] + dh_next  # from above and from step t + 1
            dx, dh_next, dc_next, dW_x_t, dW_h_t, db_t = self.cell.backward(dh, dc_next, caches[t])
            dxs[:, t] = dx
            dW_x += dW_x_t
            dW_h += dW_h_t
            db += db_t
        return dxs, dW_x, dW_h, db


# --- model
class CharLSTM(plumbing.Interface):  # get_weights, reset_state, resume: numpy_impl/plumbing.py
    """L stacked LSTM layers of H units and a dense head to V logits, trained with numpy_impl.optim."""

    def __init__(self, config, weights, path="cell", formula="pytorch"):
        plumbing.check(config, weights, path, PATHS)
        self.config, self.path, self.formula = config, path, formula
        self.dtype = np.dtype(config.dtype)
        V, H, L = config.vocab_size, config.hidden_size, config.num_layers
        self.layers = []  # one object per layer: dropout goes between them
        for l in range(L):
            self.layers.append(LSTMLayer(V if l == 0 else H, H, self.dtype, config.recurrent_activation))
        self.head = (np.empty((H, V), self.dtype), np.empty((V,), self.dtype))  # W (H, V), b (V,)
        self.params = self.load(weights)  # plumbing.py: interchange name -> each array above, filled; the optimizer's
        self.optimizer = make_optimizer(config, formula)  # numpy_impl/optim.py: SGD, Adagrad, Adam by hand
        self.reset_state()

    def zero_state(self, B):
        H = self.config.hidden_size
        return [(np.zeros((B, H), self.dtype), np.zeros((B, H), self.dtype)) for _ in range(self.config.num_layers)]

    # --- forward
    def run(self, x, state, masks=None):
        """Forward: logits (B, T, V), the new state [(h, c)] per layer, and what backward needs.
        masks: common/dropout.py's [(B, T, H)] per layer, multiplying each layer's output; None: none."""
        x = np.asarray(x)
        V = self.config.vocab_size
        if state is None:
            state = self.zero_state(x.shape[0])
        state = [(np.asarray(h, self.dtype), np.asarray(c, self.dtype)) for h, c in state]
        hs = np.eye(V, dtype=self.dtype)[x]  # (B, T, V): the input of layer 0, one-hot
        new_state, caches = [], []
        for l, (h, c) in enumerate(state):
            hs, h, c, cache = self.layers[l].forward(hs, (h, c))  # (B, T, H): the input of layer l + 1
            if masks is not None:
                hs = hs * masks[l]  # dropout on the input of layer l + 1 or the head
            new_state.append((h, c))
            caches.append(cache)
        logits = hs @ self.params["head.W"] + self.params["head.b"]  # (B, T, V)
        return logits, new_state, (hs, caches)

    def forward(self, x, state=None):
        """Logits np (B, T, V) in config.dtype and the new state [(h, c)] per layer; no update."""
        logits, new_state, _ = self.run(x, state)
        return logits, new_state

    # --- loss
    def loss(self, x, y, state, masks=None):
        """Mean cross-entropy over all B * T positions (config.target "all") or the B last ones
        ("last", y (B, 1)), the new state, and what backward needs."""
        logits, new_state, (hs, caches) = self.run(x, state, masks)
        if self.config.target == "last":  # many-to-one: the loss sees logits[:, -1:] only
            loss, dlast = cross_entropy(logits[:, -1:], np.asarray(y))  # (B, 1, V)
            dlogits = np.zeros_like(logits)  # (B, T, V): no gradient at the other positions
            dlogits[:, -1:] = dlast
        else:
            loss, dlogits = cross_entropy(logits, np.asarray(y))
        return loss, new_state, (dlogits, hs, caches, masks)

    def evaluate(self, x, y, state=None):
        """Mean cross-entropy over the scored positions (see loss), a python float; no update."""
        return self.loss(x, y, state)[0]

    # --- gradients
    def backward(self, dlogits, hs, caches, masks=None):
        """What autograd does in torch and keras: every weight's gradient, walking run in reverse.
        dlogits (B, T, V) from cross_entropy; hs (B, T, H) the head's input; caches, masks: run's."""
        V, H = self.config.vocab_size, self.config.hidden_size
        grads = {"head.W": hs.reshape(-1, H).T @ dlogits.reshape(-1, V), "head.b": dlogits.sum(axis=(0, 1))}
        dhs = dlogits @ self.params["head.W"].T  # (B, T, H)
        for l in reversed(range(self.config.num_layers)):
            if masks is not None:
                dhs = dhs * masks[l]  # back through the dropout on layer l's output
            dhs, dW_x, dW_h, db = self.layers[l].backward(dhs, caches[l])  # dhs (B, T, H): for layer l - 1
            grads[f"lstm.{l}.W_x"], grads[f"lstm.{l}.W_h"], grads[f"lstm.{l}.b"] = dW_x, dW_h, db
        return {name: grads[name] for name in self.params}

    def gradients(self, x, y, state=None, masks=None):
        """dict interchange name -> np.ndarray of d loss / d weight; no update. masks: as train_step's."""
        loss, _, cache = self.loss(x, y, state, masks)
        grads = self.backward(*cache)  # by hand: torch and keras differentiate the loss
        return grads

    # --- train step
    def train_step(self, x, y, masks=None, learning_rate=None):
        """One optimizer update from the carried state (clipped by global norm when clip_norm > 0,
        by value when clip_value > 0); returns the loss before it and carries the new state
        (truncated BPTT); with target "last" every call starts from zeros. masks: the step's
        dropout masks, learning_rate: the step's rate (common/dropout.py, common/schedule.py)."""
        self.start_step(learning_rate)  # numpy_impl/plumbing.py: zeros for target "last", the step's rate
        loss, new_state, cache = self.loss(x, y, self.state, masks)
        grads = self.backward(*cache)
        if self.config.clip_norm > 0:
            grads, _ = FORMULAS[self.formula]["clip"](grads, self.config.clip_norm)  # numpy_impl/optim.py, formula's own
        if self.config.clip_value > 0:
            grads = clip_by_value(grads, self.config.clip_value)  # every element into [-V, V]
        self.optimizer.step(self.params, grads)
        self.state = new_state  # plain arrays: no graph to cut
        return loss
