"""The tuned PyTorch cell (path "fast"): the gate equations of torch_impl/model.py's cell path with
each text stream as a column, h (H, B), and layer 0's one-hot product as F.embedding. Same numbers
as the lesson; what each trick buys is the "torch-fast" row against "torch-cell" in the report.

    model = make_model("torch", config, init_weights(config), path="fast")   # common.frameworks
    loss = model.train_step(x, y)                       # x, y: int (B, T)
    logits, state = model.forward(x)                    # np (B, T, V), [(h, c)] per layer
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common.errors import ConfigError
from common.checkpoint import check_training_state
from common.weights import check_weights

PATHS = ("fast",)


# --- helpers
# torch helpers: the optimizer, and the way out of a tensor

def make_optimizer(config, params):
    """torch.optim's own optimizer for config.optimizer; clipping is a separate call in train_step.

    Its formulas are numpy_impl.optim's default ("pytorch"): Adam lr * m_hat / (sqrt(v_hat) + eps),
    Adagrad lr * g / (sqrt(s) + eps).
    """
    lr = config.learning_rate
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if config.optimizer == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, initial_accumulator_value=0.0, eps=1e-10)
    return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=1e-8)


def to_numpy(t):
    """A numpy copy of tensor t (never a view that a later update would change)."""
    return t.detach().numpy().copy()


# --- step
# Columns: each text stream is a column, h_t (H, B), z_t (4H, B), as numpy_impl/fast.py does (the
# lesson, nn.LSTM and the interface keep rows, (B, H)). The numbers are the same; what changes is
# the matrix product asked of MKL, W_h^T (4H, H) @ h (H, B) against h (B, H) @ W_h (torch-fast row).
# Gates i, f, g, o stacked as 4H rows:
#   z_t = x_t @ W_x + h_{t-1} @ W_h + b ;  c_t = f * c_{t-1} + i * g ;  h_t = o * tanh(c_t)

def lstm_step(z, c):
    """One time step: pre-activations z (4H, B) and the cell state c (H, B) to the new (h, c)."""
    i, f, g, o = z.chunk(4, dim=0)
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    c = f * c + i * g
    h = o * torch.tanh(c)
    return h, c


# --- layer over time

def lstm_forward(xz, h, c, W_h):
    """One layer over T steps; autograd records every operation for the backward pass.

    xz: (T, 4H, B) x_t @ W_x + b for all steps at once (the input does not depend on h)
    h, c: (H, B) initial state; W_h: (H, 4H).
    Returns hs (T, H, B) with hs[t] = h_t, and the last h, c.
    """
    W_hT = W_h.T.contiguous()  # (4H, H): MKL is slower on a transposed view
    hs = []
    for xz_t in xz.unbind(0):
        z = torch.addmm(xz_t, W_hT, h)  # (4H, B) = xz_t + h_{t-1} @ W_h, as columns
        h, c = lstm_step(z, c)
        hs.append(h)
    return torch.stack(hs), h, c


# --- model
class CharLSTM:
    """L stacked LSTM layers of H units and a dense head to V logits, trained with torch.optim."""

    def __init__(self, config, weights, path="fast"):
        if path not in PATHS:
            raise ConfigError(f"torch has no path {path!r}; choose one of {', '.join(PATHS)}.")
        check_weights(weights, config)
        self.config, self.path = config, path
        self.dtype = getattr(torch, config.dtype)
        # params: interchange name -> torch parameter, in the interchange layout
        self.params = {name: nn.Parameter(torch.empty(np.shape(weights[name]), dtype=self.dtype)) for name in weights}
        with torch.no_grad():
            for name, p in self.params.items():
                p.copy_(torch.as_tensor(np.asarray(weights[name])))
        self.optimizer = make_optimizer(config, list(self.params.values()))
        self.reset_state()

    def get_weights(self):
        """The weights in the interchange layout: dict name -> np.ndarray (copies), config.dtype."""
        return {name: to_numpy(p) for name, p in self.params.items()}

    def reset_state(self):
        """Zero the state carried from one train_step to the next (a new epoch)."""
        self.state = self.zero_state(self.config.batch_size)

    def zero_state(self, B):
        H = self.config.hidden_size
        return [(torch.zeros((B, H), dtype=self.dtype), torch.zeros((B, H), dtype=self.dtype)) for _ in range(self.config.num_layers)]

    # --- forward
    def run(self, x, state):
        """Forward, recorded by autograd: logits (B, T, V) and the new state [(h, c)] per layer."""
        x = torch.as_tensor(np.asarray(x), dtype=torch.long)
        if state is None:
            state = self.zero_state(x.shape[0])
        state = [(torch.as_tensor(h, dtype=self.dtype), torch.as_tensor(c, dtype=self.dtype)) for h, c in state]
        new_state = []
        for l, (h, c) in enumerate(state):
            h, c = h.T, c.T  # columns
            W_x, W_h, b = self.params[f"lstm.{l}.W_x"], self.params[f"lstm.{l}.W_h"], self.params[f"lstm.{l}.b"]
            if l == 0:  # one-hot x_t @ W_x is a row gather; F.embedding's backward is faster than W_x[x]'s
                xz = (F.embedding(x.T, W_x) + b).transpose(1, 2)  # (T, 4H, B)
            else:
                xz = torch.matmul(W_x.T.contiguous(), hs) + b[:, None]  # (T, 4H, B): all steps in one call
            hs, h, c = lstm_forward(xz, h, c, W_h)  # hs (T, H, B)
            new_state.append((h.T, c.T))  # rows (B, H) again, for the caller
        logits = torch.matmul(self.params["head.W"].T, hs) + self.params["head.b"][:, None]  # (T, V, B)
        return logits.permute(2, 0, 1), new_state  # (B, T, V) view of the columns

    def forward(self, x, state=None):
        """Logits np (B, T, V) in config.dtype and the new state [(h, c)] per layer; no update."""
        with torch.no_grad():  # nothing to differentiate: autograd records nothing
            logits, new_state = self.run(x, state)
        return to_numpy(logits), [(to_numpy(h), to_numpy(c)) for h, c in new_state]

    # --- loss
    def loss(self, x, y, state):
        """Mean cross-entropy over all B * T positions (a tensor autograd can differentiate), new state."""
        logits, new_state = self.run(x, state)
        y = torch.as_tensor(np.asarray(y), dtype=torch.long)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        return loss, new_state

    def evaluate(self, x, y, state=None):
        """Mean cross-entropy over all B * T positions, a python float; no update."""
        with torch.no_grad():
            return self.loss(x, y, state)[0].item()

    # --- gradients
    def gradients(self, x, y, state=None):
        """dict interchange name -> np.ndarray of d loss / d weight; no update."""
        self.optimizer.zero_grad(set_to_none=True)
        loss, _ = self.loss(x, y, state)
        loss.backward()  # autograd fills p.grad: the whole of numpy's backward
        grads = {name: to_numpy(p.grad) for name, p in self.params.items()}
        self.optimizer.zero_grad(set_to_none=True)
        return grads

    # --- train step
    def train_step(self, x, y):
        """One optimizer update from the carried state (clipped by global norm when clip_norm > 0);
        returns the loss before it and carries the new state (truncated BPTT)."""
        self.optimizer.zero_grad(set_to_none=True)
        loss, new_state = self.loss(x, y, self.state)
        loss.backward()
        if self.config.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.params.values(), self.config.clip_norm)
        self.optimizer.step()
        self.state = [(h.detach(), c.detach()) for h, c in new_state]  # cut the graph here
        return loss.item()

    def get_training_state(self):
        """What exact resume needs beyond the weights (common/checkpoint.py): dict name -> np.ndarray,
        the optimizer's state ("optim.m/lstm.0.W_x", "optim.v/...", "optim.sum/..." for Adagrad,
        "optim.step") and the carried state ("state.h/0", "state.c/0", ...), interchange layout."""
        slots = {"sgd": {}, "adagrad": {"sum": "sum"}, "adam": {"m": "exp_avg", "v": "exp_avg_sq"}}[self.config.optimizer]
        tensors = {}
        for name, p in self.params.items():
            state = self.optimizer.state[p]  # empty before Adam's first step: zeros
            for slot, key in slots.items():
                tensors[f"optim.{slot}/{name}"] = to_numpy(state.get(key, torch.zeros_like(p)))
        if self.config.optimizer == "adam":
            steps = [int(self.optimizer.state[p].get("step", 0)) for p in self.params.values()]
            tensors["optim.step"] = np.array(steps[0], np.int64)
        for l, (h, c) in enumerate(self.state):
            tensors[f"state.h/{l}"], tensors[f"state.c/{l}"] = to_numpy(h), to_numpy(c)
        return tensors

    def set_training_state(self, tensors):
        """The inverse of get_training_state; a missing, extra or misshaped tensor is a CheckpointError."""
        check_training_state(tensors, self.config)
        slots = {"sgd": {}, "adagrad": {"sum": "sum"}, "adam": {"m": "exp_avg", "v": "exp_avg_sq"}}[self.config.optimizer]
        scalar = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32  # torch.optim's step
        with torch.no_grad():
            for name, p in self.params.items():
                state = self.optimizer.state[p]
                for slot, key in slots.items():
                    state[key] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state[key].copy_(torch.as_tensor(tensors[f"optim.{slot}/{name}"]))
                if self.config.optimizer == "adam":
                    state["step"] = torch.tensor(float(tensors["optim.step"]), dtype=scalar)
        # as run leaves it: a (B, H) view of (H, B) columns, so the next sums run in the same order
        self.state = [(torch.as_tensor(np.ascontiguousarray(tensors[f"state.h/{l}"].T), dtype=self.dtype).T,
                       torch.as_tensor(np.ascontiguousarray(tensors[f"state.c/{l}"].T), dtype=self.dtype).T)
                      for l in range(self.config.num_layers)]
