"""PyTorch character-level LSTM: torch.nn.LSTM (path="layer") or the gate equations in torch ops
(path="cell"). What matters in PyTorch: only the forward pass is written; autograd records it
as it runs, and loss.backward() is the whole of numpy_impl's lstm_backward.

    model = CharLSTM(config, init_weights(config))     # path="layer" (nn.LSTM) or "cell"
    loss = model.train_step(x, y)                       # x, y: int (B, T)
    logits, state = model.forward(x)                    # np (B, T, V), [(h, c)] per layer
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common.errors import ConfigError
from common.weights import check_weights

PATHS = ("layer", "cell")


# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# Columns: the cell path keeps each text stream as a column, h_t (H, B), z_t (4H, B), as numpy_impl
# does (nn.LSTM keeps rows, (B, H), and so does the interface). The numbers are the same; what
# changes is the matrix product asked of MKL: W_h^T (4H, H) @ h (H, B) takes 85 us where h (B, H)
# @ W_h (H, 4H) takes 177, and autograd's per-step dW_h 90 against 209 (H=256, B=32, 2 threads,
# alone). In the train step the gain is smaller, 0.99-1.22x over three runs of benchmarks/levers.py:
# per-step products of MKL here run at about half of numpy's OpenBLAS (see the report's
# matrix-multiply peak), and the step is mostly autograd's 260 small products and about 3,300
# small element-wise kernels.

# One LSTM layer: gates i, f, g, o stacked (4H rows here; nn.LSTM: 4H columns)
#   z_t = x_t @ W_x + h_{t-1} @ W_h + b ;  c_t = f * c_{t-1} + i * g ;  h_t = o * tanh(c_t)
# (numpy: lstm_forward / lstm_backward; torch and keras: the explicit-cell code)

def lstm_step(z, c):
    """One time step: pre-activations z (4H, B) and the cell state c (H, B) to the new (h, c)."""
    i, f, g, o = z.chunk(4, dim=0)
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    c = f * c + i * g
    h = o * torch.tanh(c)
    return h, c


def lstm_forward(xz, h, c, W_h):
    """One layer over T steps; autograd records every operation for the backward pass.

    xz: (T, 4H, B) x_t @ W_x + b for all steps at once (the input does not depend on h)
    h, c: (H, B) initial state; W_h: (H, 4H).
    Returns hs (T, H, B) with hs[t] = h_t, and the last h, c.
    """
    W_hT = W_h.T.contiguous()  # (4H, H): a transposed view would cost the product 1.6x
    hs = []
    for xz_t in xz.unbind(0):
        z = torch.addmm(xz_t, W_hT, h)  # (4H, B) = xz_t + h_{t-1} @ W_h, as columns
        h, c = lstm_step(z, c)
        hs.append(h)
    return torch.stack(hs), h, c


# ---------------------------------------------------------------------------------------------
class CharLSTM:
    """L stacked LSTM layers of H units and a dense head to V logits, trained with torch.optim."""

    def __init__(self, config, weights, path="layer"):
        if path not in PATHS:
            raise ConfigError(f"torch has no path {path!r}; choose one of {', '.join(PATHS)}.")
        check_weights(weights, config)
        self.config, self.path = config, path
        self.dtype = getattr(torch, config.dtype)
        V, H, L = config.vocab_size, config.hidden_size, config.num_layers
        # params: interchange name -> torch parameter, in torch's own layout (see interchange)
        if path == "layer":
            self.lstm = nn.LSTM(V, H, num_layers=L, batch_first=True, dtype=self.dtype)
            self.head = nn.Linear(H, V, dtype=self.dtype)
            self.params = {}
            for l in range(L):
                self.params[f"lstm.{l}.W_x"] = getattr(self.lstm, f"weight_ih_l{l}")
                self.params[f"lstm.{l}.W_h"] = getattr(self.lstm, f"weight_hh_l{l}")
                self.params[f"lstm.{l}.b"] = getattr(self.lstm, f"bias_ih_l{l}")
                # frozen at 0: b = bias_ih + bias_hh, and training both would move b twice
                # as far as the other frameworks do and count its gradient twice when clipping
                getattr(self.lstm, f"bias_hh_l{l}").requires_grad_(False).zero_()
            self.params["head.W"], self.params["head.b"] = self.head.weight, self.head.bias
        else:
            self.params = {name: nn.Parameter(torch.empty(np.shape(weights[name]), dtype=self.dtype)) for name in weights}
        with torch.no_grad():  # a copy into each parameter, through the transposed view if any
            for name, p in self.params.items():
                self.interchange(p).copy_(torch.as_tensor(np.asarray(weights[name])))
        self.optimizer = make_optimizer(config, list(self.params.values()))
        self.reset_state()

    def interchange(self, t):
        """t in the interchange layout: torch.nn stores each W transposed, (out, in) (DESIGN.md)."""
        return t.T if self.path == "layer" and t.ndim == 2 else t

    def get_weights(self):
        """The weights in the interchange layout: dict name -> np.ndarray (copies), config.dtype."""
        return {name: to_numpy(self.interchange(p)) for name, p in self.params.items()}

    def reset_state(self):
        """Zero the state carried from one train_step to the next (a new epoch)."""
        self.state = self.zero_state(self.config.batch_size)

    def zero_state(self, B):
        H = self.config.hidden_size
        return [(torch.zeros((B, H), dtype=self.dtype), torch.zeros((B, H), dtype=self.dtype)) for _ in range(self.config.num_layers)]

    def run(self, x, state):
        """Forward, recorded by autograd: logits (B, T, V) and the new state [(h, c)] per layer."""
        x = torch.as_tensor(np.asarray(x), dtype=torch.long)
        V = self.config.vocab_size
        if state is None:
            state = self.zero_state(x.shape[0])
        state = [(torch.as_tensor(h, dtype=self.dtype), torch.as_tensor(c, dtype=self.dtype)) for h, c in state]
        if self.path == "layer":  # nn.LSTM runs all L layers in one call, its state stacked (L, B, H)
            h, c = torch.stack([h for h, _ in state]), torch.stack([c for _, c in state])
            hs, (h, c) = self.lstm(F.one_hot(x, V).to(self.dtype), (h, c))  # (B, T, H) from the last layer
            return self.head(hs), list(zip(h.unbind(0), c.unbind(0)))
        new_state = []
        for l, (h, c) in enumerate(state):
            h, c = h.T, c.T  # columns
            W_x, W_h, b = self.params[f"lstm.{l}.W_x"], self.params[f"lstm.{l}.W_h"], self.params[f"lstm.{l}.b"]
            if l == 0:  # one-hot x_t @ W_x is a row gather; F.embedding's backward is 6x faster than W_x[x]'s
                xz = (F.embedding(x.T, W_x) + b).transpose(1, 2)  # (T, 4H, B)
            else:
                xz = torch.matmul(W_x.T.contiguous(), hs) + b[:, None]  # (T, 4H, B): all steps in one call
            hs, h, c = lstm_forward(xz, h, c, W_h)  # hs (T, H, B)
            new_state.append((h.T, c.T))  # rows (B, H) again, for the caller
        logits = torch.matmul(self.params["head.W"].T, hs) + self.params["head.b"][:, None]  # (T, V, B)
        return logits.permute(2, 0, 1), new_state  # (B, T, V) view of the columns

    def loss(self, x, y, state):
        """Mean cross-entropy over all B * T positions (a tensor autograd can differentiate), new state."""
        logits, new_state = self.run(x, state)
        y = torch.as_tensor(np.asarray(y), dtype=torch.long)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        return loss, new_state

    def forward(self, x, state=None):
        """Logits np (B, T, V) in config.dtype and the new state [(h, c)] per layer; no update."""
        with torch.no_grad():  # nothing to differentiate: autograd records nothing
            logits, new_state = self.run(x, state)
        return to_numpy(logits), [(to_numpy(h), to_numpy(c)) for h, c in new_state]

    def evaluate(self, x, y, state=None):
        """Mean cross-entropy over all B * T positions, a python float; no update."""
        with torch.no_grad():
            return self.loss(x, y, state)[0].item()

    def gradients(self, x, y, state=None):
        """dict interchange name -> np.ndarray of d loss / d weight; no update."""
        self.optimizer.zero_grad(set_to_none=True)
        loss, _ = self.loss(x, y, state)
        loss.backward()  # autograd fills p.grad: the whole of numpy's backward
        grads = {name: to_numpy(self.interchange(p.grad)) for name, p in self.params.items()}
        self.optimizer.zero_grad(set_to_none=True)
        return grads

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
