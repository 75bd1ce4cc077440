"""The tuned numpy LSTM (path "fast"): the same model and the same numbers as the lesson,
numpy_impl/model.py (path "cell"), with the tricks that make numpy fast. Each trick has one comment
line saying what it buys and naming its row: "numpy-fast" against "numpy-cell" in the report's main
table for the layout as a whole, or a lever of benchmarks/levers.py ("What made it fast").

    model = make_model("numpy", config, init_weights(config), path="fast")   # common.frameworks
    loss = model.train_step(x, y)                       # x, y: int (B, T)
    logits, state = model.forward(x)                    # np (B, T, V), [(h, c)] per layer

Read numpy_impl/model.py first: this file keeps each text stream as a column, h (H, B) (see
"Columns"), writes into kept arrays (Buffers), computes all four gates with one np.tanh
(gate_constants), and sums every weight gradient over time in one product (over_time).
"""

import functools

import numpy as np

from common.errors import ConfigError
from common.weights import check_weights
from numpy_impl import plumbing
from numpy_impl.optim import FORMULAS, check_formula, make_optimizer

PATHS = ("fast",)


# --- helpers
# numpy helpers: what torch and keras take from their libraries (cross_entropy, split_gates)

def cross_entropy(logits, y):
    """(loss, dlogits): mean cross-entropy over all B * T positions and its gradient.

    logits (B, T, V), a view of the (T, V, B) columns run computed; y int (B, T).
    dlogits comes back as those columns, (T, V, B), the layout backward walks.
    """
    logits = logits.transpose(1, 2, 0)  # (T, V, B), no copy
    T, V, B = logits.shape
    t, y, b = np.arange(T)[:, None], np.asarray(y).T, np.arange(B)  # (T, B) indices of the targets
    shifted = logits - logits.max(axis=1, keepdims=True)  # stable: exp never overflows
    e = np.exp(shifted)
    total = e.sum(axis=1)  # (T, B)
    log_p = shifted[t, y, b] - np.log(total)  # (T, B) log-probability of each target
    loss = -log_p.mean()
    dlogits = e / total[:, None, :]  # softmax
    dlogits[t, y, b] -= 1
    dlogits /= T * B
    return float(loss), dlogits


def columns(mask):
    """A dropout mask (B, T, H) of common/dropout.py in this file's layout, (T, H, B)."""
    return np.asarray(mask).transpose(1, 2, 0)


def split_gates(a):
    """The four (H, B) row blocks i, f, g, o of a (4H, B) array (views; also of (T, 4H, B))."""
    H = a.shape[-2] // 4
    return a[..., :H, :], a[..., H:2 * H, :], a[..., 2 * H:3 * H, :], a[..., 3 * H:, :]


def over_time(a, out=None):
    """(T, n, B) -> (n, T * B), every step's columns side by side (a copy, into `out` if given).
    A weight gradient summed over all steps is then one BLAS product, not T small ones (numpy-fast row)."""
    T, n, B = a.shape
    if out is None:
        return a.transpose(1, 0, 2).reshape(n, T * B)
    out.reshape(n, T, B)[...] = a.transpose(1, 0, 2)
    return out


# speed helpers: what each buys (torch and keras leave this to their kernels)

class Buffers:
    """Arrays kept from one step to the next, by name: numpy's stand-in for a framework's allocator.

    Every numpy expression returns a new array; glibc hands blocks as large as a layer's gates back
    to the kernel when they are freed, so each new one arrives as fresh pages the kernel must zero
    (lever "arrays kept between steps in Buffers"). keep(name, shape, dtype) returns the array kept
    under that name, new only the first time or when the shape changes (sampling after training).
    What a caller keeps (the state, the gradients, forward's logits) is never one of them.
    """

    def __init__(self):
        self.arrays = {}

    def __call__(self, name, shape, dtype):
        a = self.arrays.get(name)
        if a is None or a.shape != shape or a.dtype != dtype:
            a = self.arrays[name] = np.empty(shape, dtype)
        return a


@functools.lru_cache(maxsize=8)  # made once per shape; read, never written
def gate_constants(H, B, dtype):
    """(scale, shift), each (4H, B): sigmoid on i, f, o and tanh on g from ONE np.tanh over z.

    sigmoid(z) = 0.5 * tanh(0.5 * z) + 0.5, so a = scale * tanh(scale * z) + shift gives every
    gate with scale 0.5 and shift 0.5 on i, f, o, and scale 1, shift 0 on g. One transcendental
    over (4H, B) instead of exp, add and divide on three slices plus tanh on the fourth (lever
    "all four gates from one np.tanh"). As wide as z, not a (4H, 1) column: numpy broadcasts a
    column in loops of B elements, slower than the whole tanh.
    """
    scale = np.full((4 * H, B), 0.5, dtype=dtype)  # the same for every stream (column)
    scale[2 * H:3 * H] = 1.0
    shift = np.where(scale == 0.5, scale, 0).astype(dtype)
    return scale, shift


def activate_gates(z, scale, shift):
    """In place: z (4H, B) of pre-activations becomes the gates i, f, g, o (see gate_constants)."""
    z *= scale
    np.tanh(z, out=z)
    z *= scale
    z += shift


def gate_derivatives(gates, P, Q, out=None):
    """d gate / d z from the gates themselves (see gate_constants), into `out` if given:
    a * (1 - a) for the sigmoids i, f, o and 1 - a^2 for the tanh g, i.e. a * (P - a) + Q with
    P = 2 * shift (1 on i, f, o; 0 on g) and Q = 1 - P (derivative_constants)."""
    d = np.subtract(P, gates, out=out)  # one array, then in place
    d *= gates
    d += Q
    return d


def derivative_constants(scale, shift):
    """(P, Q) of gate_derivatives, from gate_constants' (scale, shift)."""
    P = 2 * shift
    return P, 1 - P


# --- layer over time
# Columns: each text stream is a column, h_t (H, B), z_t (4H, B), as min-char-rnn does for its one
# stream; the lesson, nn.LSTM, Keras and the interface keep rows, h_t (B, H). The numbers are the
# same (z_t here is their z_t transposed); what changes is the matrix product BLAS is asked for:
# OpenBLAS runs W_h^T (4H, H) @ h (H, B) faster than h (B, H) @ W_h (H, 4H) (numpy-fast row).
# Gates i, f, g, o stacked as 4H rows; the step is written inside the loop (no "step" section):
#   z_t = x_t @ W_x + h_{t-1} @ W_h + b ;  c_t = f * c_{t-1} + i * g ;  h_t = o * tanh(c_t)

def lstm_forward(xz, h, c, W_hT, gate_consts, keep=None):
    """One layer over T steps; the cache keeps what lstm_backward needs.

    xz: (T, 4H, B) x_t @ W_x + b for all steps at once (the input does not depend on h)
    h, c: (H, B) initial state; W_hT: W_h.T (4H, H) in C order, as BLAS reads it fastest (CharLSTM.transposed);
    gate_consts: gate_constants(H, B, dtype).
    keep: this layer's Buffers, where the cache is written (new arrays if None).
    Returns hs (T, H, B) with hs[t] = h_t, the last h, c (views), and the cache for lstm_backward.
    """
    T, H4, B = xz.shape
    H = H4 // 4
    keep = keep or Buffers()
    hs = keep("hs", (T + 1, H, B), xz.dtype)  # hs[0] = h, hs[t + 1] = h_t
    cs = keep("cs", (T + 1, H, B), xz.dtype)
    gates = keep("gates", (T, 4 * H, B), xz.dtype)  # i, f, g, o after their nonlinearities
    tanh_cs = keep("tanh_cs", (T, H, B), xz.dtype)
    hs[0], cs[0] = h, c
    for t in range(T):
        z = gates[t]
        np.matmul(W_hT, hs[t], out=z)  # (4H, B): h_{t-1} @ W_h, as columns (lever "np.matmul(out=)")
        z += xz[t]
        activate_gates(z, *gate_consts)
        i, f, g, o = split_gates(z)
        cs[t + 1] = f * cs[t] + i * g
        np.tanh(cs[t + 1], out=tanh_cs[t])
        np.multiply(o, tanh_cs[t], out=hs[t + 1])
    return hs[1:], hs[T], cs[T], (hs, cs, gates, tanh_cs)


def lstm_backward(dhs, cache, W_h, gate_consts, keep=None):
    """Backward through one layer, from the last step to the first.

    dhs: (T, H, B) gradient of the loss reaching each h_t from above (the head or the next layer)
    keep: Buffers for dz and the gate derivatives (new arrays if None).
    Returns dz (T, 4H, B), the gradient at the pre-activations of every step; the weight
    gradients are then one product each over all steps (over_time). The loss does not see the
    final state, so dh_next and dc_next start at zero; the initial state is a constant (truncated BPTT).
    """
    _, cs, gates, tanh_cs = cache
    T, H, B = dhs.shape
    keep = keep or Buffers()
    dz = keep("dz", gates.shape, gates.dtype)  # (T, 4H, B); its blocks di, df, dg, do are written in place
    d_gates = keep("d_gates", gates.shape[1:], gates.dtype)
    P, Q = derivative_constants(*gate_consts)
    dh_next = np.zeros((H, B), dtype=dhs.dtype)
    dc_next = np.zeros((H, B), dtype=dhs.dtype)
    for t in reversed(range(T)):
        i, f, g, o = split_gates(gates[t])
        di, df, dg, do = split_gates(dz[t])
        dh = dhs[t] + dh_next  # (H, B) from above and from step t + 1
        np.multiply(dh, tanh_cs[t], out=do)
        dc = dc_next + dh * o * (1 - tanh_cs[t] ** 2)  # from step t + 1 and through h_t = o * tanh(c_t)
        np.multiply(dc, g, out=di)
        np.multiply(dc, cs[t], out=df)
        np.multiply(dc, i, out=dg)
        dc_next = dc * f
        dz[t] *= gate_derivatives(gates[t], P, Q, out=d_gates)  # through the sigmoids and the tanh
        np.matmul(W_h, dz[t], out=dh_next)  # (H, B) = dz_t @ W_h^T as columns, written in place
    return dz


# --- model
class CharLSTM:
    """L stacked LSTM layers of H units and a dense head to V logits, trained with numpy_impl.optim."""

    def __init__(self, config, weights, path="fast", formula="pytorch"):
        if path not in PATHS:
            raise ConfigError(f"numpy has no path {path!r}; choose one of {', '.join(PATHS)}.")
        if config.recurrent_activation != "sigmoid":  # gate_constants' one tanh is a sigmoid on i, f, o
            raise ConfigError(f"numpy's path 'fast' computes its gates as sigmoids only; use --path cell "
                              f"for recurrent_activation {config.recurrent_activation}.")
        check_formula(formula)
        check_weights(weights, config)
        self.config, self.path, self.formula = config, path, formula
        self.dtype = np.dtype(config.dtype)
        V, H, L = config.vocab_size, config.hidden_size, config.num_layers
        # params: interchange name -> np.ndarray (copies), updated in place by the optimizer; in C
        # order like the gradients and Adam's moments (Adam is slower on mixed orders: numpy-fast row)
        self.params = {name: np.array(weights[name], dtype=self.dtype, order="C") for name in weights}
        self.optimizer = make_optimizer(config, formula)  # numpy_impl/optim.py: SGD, Adagrad, Adam by hand
        self.layer_buffers = [Buffers() for _ in range(L)]  # each layer's cache, kept between steps
        self.buffers = Buffers()  # the head's and backward's arrays, kept between steps
        self.transposes = {}  # run's transposed weights, kept until the next update (see transposed)
        self.clip = FORMULAS[formula]["clip"]
        self.clip_by_value = FORMULAS[formula]["clip_value"]
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

    # --- forward
    def run(self, x, state, masks=None):
        """Forward: logits (B, T, V), the new state [(h, c)] per layer, and the caches for backward.
        The logits and the caches live in the model's Buffers: valid until the next run.
        masks: common/dropout.py's [(B, T, H)] per layer, multiplying each layer's output; None: none."""
        x = np.asarray(x)
        (B, T), H = x.shape, self.config.hidden_size
        if state is None:
            state = self.zero_state(x.shape[0])
        state = [(np.asarray(h, self.dtype).T, np.asarray(c, self.dtype).T) for h, c in state]  # columns
        new_state, caches = [], []
        for l, (h, c) in enumerate(state):
            keep = self.layer_buffers[l]
            xz = keep("xz", (T, 4 * H, B), self.dtype)  # x_t @ W_x + b of every step, before the loop
            if l == 0:  # one-hot x_t @ W_x + b is a gather of columns of (W_x + b)^T, step by step:
                W_xb = self.transposed("lstm.0.W_x", plus="lstm.0.b")  # (4H, V); xz[t] must come out contiguous
                for t in range(T):  # (a gather of all steps at once leaves xz[t] transposed, slower to add)
                    np.take(W_xb, x[:, t], axis=1, out=xz[t])
            else:
                np.matmul(self.transposed(f"lstm.{l}.W_x"), hs, out=xz)  # all steps in one call
                xz += self.params[f"lstm.{l}.b"][:, None]
            W_hT = self.transposed(f"lstm.{l}.W_h")
            hs, h, c, cache = lstm_forward(xz, h, c, W_hT, gate_constants(H, B, self.dtype), keep)  # hs (T, H, B)
            if masks is not None:  # dropout on the input of layer l + 1 or the head: a new array, the cache keeps hs
                hs = hs * columns(masks[l])
            new_state.append((h.T.copy(), c.T.copy()))  # rows (B, H) again, for the caller
            caches.append(cache)
        logits = np.matmul(self.params["head.W"].T, hs, out=self.buffers("logits", (T, self.config.vocab_size, B), self.dtype))
        logits += self.params["head.b"][:, None]  # (T, V, B)
        return logits.transpose(2, 0, 1), new_state, caches  # (B, T, V) view of the columns

    def transposed(self, name, plus=None):
        """(params[name] + params[plus]).T in C order, as BLAS and np.take read it fastest; made once
        per update (train_step forgets them), since a copy per run would cost more than a run of
        one step, generation's (results/GRID.md, Generation latency)."""
        key = (name, plus)
        if key not in self.transposes:
            p = self.params[name] if plus is None else self.params[name] + self.params[plus]
            self.transposes[key] = np.ascontiguousarray(p.T)
        return self.transposes[key]

    def dropped(self, caches, l, masks):
        """Layer l's output as the next layer (or the head) read it: (T, H, B), masked when masks."""
        hs = caches[l][0][1:]
        return hs if masks is None else hs * columns(masks[l])

    def forward(self, x, state=None):
        """Logits np (B, T, V) in config.dtype and the new state [(h, c)] per layer; no update."""
        logits, new_state, _ = self.run(x, state)
        return logits.copy(), new_state

    # --- loss
    def loss(self, x, y, state, masks=None):
        """Mean cross-entropy over all B * T positions (config.target "all") or the B last ones
        ("last", y (B, 1)), the new state, and what backward needs."""
        logits, new_state, caches = self.run(x, state, masks)
        if self.config.target == "last":  # many-to-one: the loss sees logits[:, -1:] only
            loss, dlast = cross_entropy(logits[:, -1:], y)  # dlast (1, V, B)
            dlogits = np.zeros(logits.shape[1:] + logits.shape[:1], self.dtype)  # (T, V, B), backward's columns
            dlogits[-1:] = dlast
        else:
            loss, dlogits = cross_entropy(logits, y)
        return loss, new_state, (dlogits, caches, masks)

    def evaluate(self, x, y, state=None):
        """Mean cross-entropy over the scored positions (see loss), a python float; no update."""
        return self.loss(x, y, state)[0]

    # --- gradients
    def backward(self, x, dlogits, caches, masks=None):
        """What autograd does in torch and keras: every weight's gradient, walking run in reverse.

        dlogits: (T, V, B) from cross_entropy; caches: one per layer from run; masks: run's dropout.
        """
        x = np.asarray(x)
        V, L, keep = self.config.vocab_size, self.config.num_layers, self.buffers
        hs = self.dropped(caches, L - 1, masks)  # (T, H, B) from the last layer, as the head read it
        T, H, B = hs.shape
        h_all = keep("h_all", (H, T * B), self.dtype)  # over_time's copies of hs, one at a time
        grads = {"head.W": over_time(hs, h_all) @ over_time(dlogits).T, "head.b": dlogits.sum(axis=(0, 2))}
        dhs = np.matmul(self.params["head.W"], dlogits, out=keep("dhs", (T, H, B), self.dtype))
        if masks is not None:
            dhs = dhs * columns(masks[L - 1])  # through the head's dropout
        for l in reversed(range(L)):
            hs = caches[l][0]  # (T + 1, H, B): the inputs h_{t-1} of W_h
            dz = lstm_backward(dhs, caches[l], self.params[f"lstm.{l}.W_h"], gate_constants(H, B, self.dtype), keep)
            dz_all = over_time(dz, keep("dz_all", (4 * H, T * B), self.dtype))  # (4H, T * B)
            grads[f"lstm.{l}.W_h"] = over_time(hs[:-1], h_all) @ dz_all.T  # every step in one product
            grads[f"lstm.{l}.b"] = dz_all.sum(axis=1)
            if l == 0:
                one_hot = np.eye(V, dtype=self.dtype)[x.T.reshape(-1)]  # (T * B, V), over_time's order
                grads["lstm.0.W_x"] = one_hot.T @ dz_all.T  # a BLAS product, not np.add.at (lever "one-hot product")
            else:
                grads[f"lstm.{l}.W_x"] = over_time(self.dropped(caches, l - 1, masks), h_all) @ dz_all.T
                dhs = np.matmul(self.params[f"lstm.{l}.W_x"], dz_all, out=keep("dhs_all", (H, T * B), self.dtype))
                dhs = dhs.reshape(H, T, B).swapaxes(0, 1)  # (T, H, B) view: one product, not T
                if masks is not None:
                    dhs = dhs * columns(masks[l - 1])  # through the dropout on layer l's input
        return {name: grads[name] for name in self.params}

    def gradients(self, x, y, state=None, masks=None):
        """dict interchange name -> np.ndarray of d loss / d weight; no update. masks: as train_step's."""
        loss, _, cache = self.loss(x, y, state, masks)
        grads = self.backward(x, *cache)  # by hand: torch and keras differentiate the loss
        return grads

    # --- train step
    def train_step(self, x, y, masks=None, learning_rate=None):
        """One optimizer update from the carried state (clipped by global norm when clip_norm > 0,
        by value when clip_value > 0); returns the loss before it and carries the new state
        (truncated BPTT); with target "last" every call starts from zeros.
        masks: common/dropout.py's dropout masks; learning_rate: this step's (common/schedule.py)."""
        if self.config.target == "last":
            self.reset_state()  # many-to-one: every window from a zero state, nothing carried
        if learning_rate is not None:
            self.optimizer.lr = learning_rate
        loss, new_state, cache = self.loss(x, y, self.state, masks)
        grads = self.backward(x, *cache)
        if self.config.clip_norm > 0:
            grads, _ = self.clip(grads, self.config.clip_norm)  # numpy_impl/optim.py, formula's own
        if self.config.clip_value > 0:
            grads = self.clip_by_value(grads, self.config.clip_value)  # every element into [-V, V]
        self.optimizer.step(self.params, grads)
        self.transposes.clear()  # made from the weights before this update
        self.state = new_state  # plain arrays: no graph to cut
        return loss

    def get_training_state(self):
        """What exact resume needs beyond the weights: numpy_impl/plumbing.py, shared with model.py."""
        return plumbing.get_training_state(self)

    def set_training_state(self, tensors):
        """The inverse of get_training_state; a missing, extra or misshaped tensor is a CheckpointError."""
        plumbing.set_training_state(self, tensors)
