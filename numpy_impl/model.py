"""numpy character-level LSTM with the backward pass written by hand (min-char-rnn, CS231n).
What matters in numpy: nothing records the forward pass, so lstm_forward keeps a cache of what
it computed and lstm_backward walks it in reverse, one chain-rule step per line.

    model = CharLSTM(config, init_weights(config))     # path="cell" is the only path
    loss = model.train_step(x, y)                       # x, y: int (B, T)
    logits, state = model.forward(x)                    # np (B, T, V), [(h, c)] per layer
"""

import numpy as np

from common.errors import ConfigError
from common.weights import check_weights
from numpy_impl.optim import FORMULAS, check_formula, make_optimizer

PATHS = ("cell",)


# ---------------------------------------------------------------------------------------------
# numpy helpers: what torch and keras take from their libraries (cross_entropy, split_gates)

def cross_entropy(logits, y):
    """(loss, dlogits): mean cross-entropy over all B * T positions and its gradient.

    logits (B, T, V), a view of the time-major rows run computed; y int (B, T).
    dlogits comes back as those rows, (T * B, V), the layout backward walks.
    """
    logits = logits.swapaxes(0, 1).reshape(-1, logits.shape[-1])  # (T * B, V), no copy
    y = np.asarray(y).T.reshape(-1)
    N = len(y)
    shifted = logits - logits.max(axis=1, keepdims=True)  # stable: exp never overflows
    e = np.exp(shifted)
    total = e.sum(axis=1)
    log_p = shifted[np.arange(N), y] - np.log(total)  # (N,) log-probability of each target
    loss = -log_p.mean()
    dlogits = e / total[:, None]  # softmax
    dlogits[np.arange(N), y] -= 1
    dlogits /= N
    return float(loss), dlogits


def split_gates(a):
    """The four (B, H) views i, f, g, o of a (B, 4H) array."""
    H = a.shape[-1] // 4
    return a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]


# ---------------------------------------------------------------------------------------------
# speed helpers: what each buys (torch and keras leave this to their kernels)

def gate_constants(H, dtype):
    """(scale, shift), each (4H,): sigmoid on i, f, o and tanh on g from ONE np.tanh over z.

    sigmoid(z) = 0.5 * tanh(0.5 * z) + 0.5, so a = scale * tanh(scale * z) + shift gives every
    gate with scale 0.5 and shift 0.5 on i, f, o, and scale 1, shift 0 on g. One transcendental
    over (B, 4H) instead of exp, add and divide on three slices plus tanh on the fourth.
    """
    scale = np.full(4 * H, 0.5, dtype=dtype)
    scale[2 * H:3 * H] = 1.0
    shift = np.where(scale == 0.5, scale, 0).astype(dtype)
    return scale, shift


def activate_gates(z, scale, shift):
    """In place: z (B, 4H) of pre-activations becomes the gates i, f, g, o (see gate_constants)."""
    z *= scale
    np.tanh(z, out=z)
    z *= scale
    z += shift


def gate_derivatives(gates, scale, shift):
    """d gate / d z from the gates themselves, one pass over all steps (see gate_constants):
    a * (1 - a) for the sigmoids i, f, o and 1 - a^2 for the tanh g, i.e. a * (P - a) + Q with
    P = 2 * shift (1 on i, f, o; 0 on g) and Q = 1 - P."""
    P = 2 * shift
    d = P - gates  # one (T, B, 4H) temporary, then in place
    d *= gates
    d += 1 - P
    return d


# ---------------------------------------------------------------------------------------------
# One LSTM layer: gates i, f, g, o stacked along the last axis (B, 4H)
#   z_t = x_t @ W_x + h_{t-1} @ W_h + b ;  c_t = f * c_{t-1} + i * g ;  h_t = o * tanh(c_t)
# (numpy: lstm_forward / lstm_backward; torch and keras: the explicit-cell code)

def lstm_forward(xz, h, c, W_h, gate_consts):
    """One layer over T steps; the cache keeps what lstm_backward needs.

    xz: (T, B, 4H) x_t @ W_x + b for all steps at once (the input does not depend on h)
    h, c: (B, H) initial state; W_h: (H, 4H); gate_consts: gate_constants(H, dtype).
    Returns hs (T, B, H) with hs[t] = h_t, the last h, c, and the cache for lstm_backward.
    """
    T, B, H4 = xz.shape
    H = H4 // 4
    hs = np.empty((T + 1, B, H), dtype=xz.dtype)  # hs[0] = h, hs[t + 1] = h_t
    cs = np.empty((T + 1, B, H), dtype=xz.dtype)
    gates = np.empty((T, B, 4 * H), dtype=xz.dtype)  # i, f, g, o after their nonlinearities
    tanh_cs = np.empty((T, B, H), dtype=xz.dtype)
    hs[0], cs[0] = h, c
    for t in range(T):
        z = gates[t]
        np.matmul(hs[t], W_h, out=z)  # (B, 4H)
        z += xz[t]
        activate_gates(z, *gate_consts)
        i, f, g, o = split_gates(z)
        cs[t + 1] = f * cs[t] + i * g
        np.tanh(cs[t + 1], out=tanh_cs[t])
        np.multiply(o, tanh_cs[t], out=hs[t + 1])
    return hs[1:], hs[T].copy(), cs[T].copy(), (hs, cs, gates, tanh_cs)


def lstm_backward(dhs, cache, W_h, gate_consts):
    """Backward through one layer, from the last step to the first.

    dhs: (T, B, H) gradient of the loss reaching each h_t from above (the head or the next layer)
    Returns dz (T, B, 4H), the gradient at the pre-activations of every step; the weight
    gradients are then one product each over all steps. The loss does not see the final state,
    so dh_next and dc_next start at zero; the initial state is a constant (truncated BPTT).
    """
    _, cs, gates, tanh_cs = cache
    T, B, H = dhs.shape
    dgates_dz = gate_derivatives(gates, *gate_consts)  # (T, B, 4H) for all steps at once
    dc_dh = 1 - tanh_cs ** 2  # (T, B, H) then o * tanh'(c)
    dc_dh *= gates[:, :, 3 * H:]
    dz = np.empty_like(gates)  # (T, B, 4H); its slices di, df, dg, do are written in place
    dh_next = np.zeros((B, H), dtype=dhs.dtype)
    dc_next = np.zeros((B, H), dtype=dhs.dtype)
    for t in reversed(range(T)):
        i, f, g, o = split_gates(gates[t])
        di, df, dg, do = split_gates(dz[t])
        dh = dhs[t] + dh_next  # (B, H) from above and from step t + 1
        np.multiply(dh, tanh_cs[t], out=do)
        dc = dc_next + dh * dc_dh[t]
        np.multiply(dc, g, out=di)
        np.multiply(dc, cs[t], out=df)
        np.multiply(dc, i, out=dg)
        dc_next = dc * f
        dz[t] *= dgates_dz[t]  # through the sigmoids and the tanh
        np.matmul(dz[t], W_h.T, out=dh_next)  # (B, H) written in place, no new array per step
    return dz


# ---------------------------------------------------------------------------------------------
class CharLSTM:
    """L stacked LSTM layers of H units and a dense head to V logits, trained with numpy_impl.optim."""

    def __init__(self, config, weights, path="cell", formula="pytorch"):
        if path not in PATHS:
            raise ConfigError(f"numpy has no path {path!r}; choose one of {', '.join(PATHS)}.")
        check_formula(formula)
        check_weights(weights, config)
        self.config, self.path, self.formula = config, path, formula
        self.dtype = np.dtype(config.dtype)
        V, H, L = config.vocab_size, config.hidden_size, config.num_layers
        # params: interchange name -> np.ndarray (copies), updated in place by the optimizer
        self.params = {name: np.array(weights[name], dtype=self.dtype) for name in weights}
        self.gate_consts = gate_constants(H, self.dtype)
        self.optimizer = make_optimizer(config, formula)  # numpy_impl/optim.py: SGD, Adagrad, Adam by hand
        self.clip = FORMULAS[formula]["clip"]
        self.reset_state()

    def get_weights(self):
        """The weights in the interchange layout: dict name -> np.ndarray (copies), config.dtype."""
        return {name: p.copy() for name, p in self.params.items()}

    def reset_state(self):
        """Zero the state carried from one train_step to the next (a new epoch)."""
        self.state = self.zero_state(self.config.batch_size)

    def zero_state(self, B):
        H = self.config.hidden_size
        return [(np.zeros((B, H), self.dtype), np.zeros((B, H), self.dtype)) for _ in range(self.config.num_layers)]

    def run(self, x, state):
        """Forward: logits (B, T, V), the new state [(h, c)] per layer, and the caches for backward."""
        x = np.asarray(x)
        B, T = x.shape
        V, H = self.config.vocab_size, self.config.hidden_size
        if state is None:
            state = self.zero_state(B)
        state = [(np.asarray(h, self.dtype), np.asarray(c, self.dtype)) for h, c in state]
        new_state, caches = [], []
        for l, (h, c) in enumerate(state):
            W_x, W_h, b = self.params[f"lstm.{l}.W_x"], self.params[f"lstm.{l}.W_h"], self.params[f"lstm.{l}.b"]
            if l == 0:
                xz = W_x[x.T]  # (T, B, 4H): one-hot x_t @ W_x is a row gather
            else:
                xz = (hs.reshape(T * B, H) @ W_x).reshape(T, B, 4 * H)  # every step in one product
            xz += b  # in place: the gather and the product made a new array
            hs, h, c, cache = lstm_forward(xz, h, c, W_h, self.gate_consts)  # hs (T, B, H)
            new_state.append((h, c))
            caches.append(cache)
        logits = (hs.reshape(T * B, H) @ self.params["head.W"] + self.params["head.b"]).reshape(T, B, V)
        return logits.swapaxes(0, 1), new_state, caches  # (B, T, V) view of time-major rows

    def loss(self, x, y, state):
        """Mean cross-entropy over all B * T positions, the new state, and what backward needs."""
        logits, new_state, caches = self.run(x, state)
        loss, dlogits = cross_entropy(logits, y)
        return loss, new_state, (dlogits, caches)

    def backward(self, x, dlogits, caches):
        """What autograd does in torch and keras: every weight's gradient, walking run in reverse.

        dlogits: (T * B, V) from cross_entropy; caches: one per layer from run.
        """
        x = np.asarray(x)
        B, T = x.shape
        V, H, L = self.config.vocab_size, self.config.hidden_size, self.config.num_layers
        N = T * B
        hs = caches[-1][0][1:]  # (T, B, H) from the last layer
        grads = {"head.W": hs.reshape(N, H).T @ dlogits, "head.b": dlogits.sum(axis=0)}
        dhs = (dlogits @ self.params["head.W"].T).reshape(T, B, H)
        for l in reversed(range(L)):
            hs = caches[l][0]  # (T + 1, B, H): the inputs h_{t-1} of W_h
            dz = lstm_backward(dhs, caches[l], self.params[f"lstm.{l}.W_h"], self.gate_consts).reshape(N, 4 * H)
            grads[f"lstm.{l}.W_h"] = hs[:-1].reshape(N, H).T @ dz  # every step in one product
            grads[f"lstm.{l}.b"] = dz.sum(axis=0)
            if l == 0:
                one_hot = np.eye(V, dtype=self.dtype)[x.T.reshape(N)]  # (N, V)
                grads["lstm.0.W_x"] = one_hot.T @ dz  # a BLAS product: 1.18x the whole step against np.add.at
            else:
                grads[f"lstm.{l}.W_x"] = caches[l - 1][0][1:].reshape(N, H).T @ dz
                dhs = (dz @ self.params[f"lstm.{l}.W_x"].T).reshape(T, B, H)
        return {name: grads[name] for name in self.params}

    def forward(self, x, state=None):
        """Logits np (B, T, V) in config.dtype and the new state [(h, c)] per layer; no update."""
        logits, new_state, _ = self.run(x, state)
        return logits.copy(), new_state

    def evaluate(self, x, y, state=None):
        """Mean cross-entropy over all B * T positions, a python float; no update."""
        return self.loss(x, y, state)[0]

    def gradients(self, x, y, state=None):
        """dict interchange name -> np.ndarray of d loss / d weight; no update."""
        loss, _, cache = self.loss(x, y, state)
        grads = self.backward(x, *cache)  # by hand: torch and keras differentiate the loss
        return grads

    def train_step(self, x, y):
        """One optimizer update from the carried state (clipped by global norm when clip_norm > 0);
        returns the loss before it and carries the new state (truncated BPTT)."""
        loss, new_state, cache = self.loss(x, y, self.state)
        grads = self.backward(x, *cache)
        if self.config.clip_norm > 0:
            grads, _ = self.clip(grads, self.config.clip_norm)  # numpy_impl/optim.py, formula's own
        self.optimizer.step(self.params, grads)
        self.state = new_state  # plain arrays: no graph to cut
        return loss
