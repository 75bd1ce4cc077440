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


def lstm_step(z, c):
    """One time step: pre-activations z (B, 4H) and the cell state c (B, H) to the new (h, c)."""
    i, f, g, o = z.chunk(4, dim=1)
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    c = f * c + i * g
    h = o * torch.tanh(c)
    return h, c


# ---------------------------------------------------------------------------------------------
# One LSTM layer: gates i, f, g, o stacked along the last axis (B, 4H)
#   z_t = x_t @ W_x + h_{t-1} @ W_h + b ;  c_t = f * c_{t-1} + i * g ;  h_t = o * tanh(c_t)
# (numpy: lstm_forward / lstm_backward; torch and keras: the explicit-cell code)

def lstm_forward(xz, h, c, W_h):
    """One layer over T steps; autograd records every operation for the backward pass.

    xz: (T, B, 4H) x_t @ W_x + b for all steps at once (the input does not depend on h)
    h, c: (B, H) initial state; W_h: (H, 4H).
    Returns hs (T, B, H) with hs[t] = h_t, and the last h, c.
    """
    hs = []
    for xz_t in xz.unbind(0):
        z = torch.addmm(xz_t, h, W_h)  # (B, 4H) = xz_t + h @ W_h
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
        w = {name: torch.tensor(np.asarray(weights[name]), dtype=self.dtype) for name in weights}  # copies
        if path == "layer":
            self.lstm = nn.LSTM(V, H, num_layers=L, batch_first=True, dtype=self.dtype)
            self.head = nn.Linear(H, V, dtype=self.dtype)
            with torch.no_grad():  # DESIGN.md's table: torch stores each W transposed, (4H, in_l)
                for l in range(L):
                    getattr(self.lstm, f"weight_ih_l{l}").copy_(w[f"lstm.{l}.W_x"].T)
                    getattr(self.lstm, f"weight_hh_l{l}").copy_(w[f"lstm.{l}.W_h"].T)
                    getattr(self.lstm, f"bias_ih_l{l}").copy_(w[f"lstm.{l}.b"])
                    getattr(self.lstm, f"bias_hh_l{l}").zero_()
                    # frozen at 0: b = bias_ih + bias_hh, and training both would move b twice
                    # as far as the other frameworks do and count its gradient twice when clipping
                    getattr(self.lstm, f"bias_hh_l{l}").requires_grad_(False)
                self.head.weight.copy_(w["head.W"].T)
                self.head.bias.copy_(w["head.b"])
            params = [p for p in [*self.lstm.parameters(), *self.head.parameters()] if p.requires_grad]
        else:
            self.weights = {name: nn.Parameter(t) for name, t in w.items()}  # interchange layout
            params = list(self.weights.values())
        self.params = params
        lr = config.learning_rate
        if config.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(params, lr=lr)
        elif config.optimizer == "adagrad":
            self.optimizer = torch.optim.Adagrad(params, lr=lr, initial_accumulator_value=0.0, eps=1e-10)
        else:  # lr * m_hat / (sqrt(v_hat) + eps): numpy_impl's default formula
            self.optimizer = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=1e-8)
        self.reset_state()

    def get_weights(self):
        if self.path == "cell":
            w = self.weights
        else:
            w = {}
            for l in range(self.config.num_layers):
                w[f"lstm.{l}.W_x"] = getattr(self.lstm, f"weight_ih_l{l}").T
                w[f"lstm.{l}.W_h"] = getattr(self.lstm, f"weight_hh_l{l}").T
                w[f"lstm.{l}.b"] = getattr(self.lstm, f"bias_ih_l{l}") + getattr(self.lstm, f"bias_hh_l{l}")
            w["head.W"], w["head.b"] = self.head.weight.T, self.head.bias
        return {name: to_numpy(t) for name, t in w.items()}

    def reset_state(self):
        self.state = self.zero_state(self.config.batch_size)

    def zero_state(self, B):
        H = self.config.hidden_size
        return [(torch.zeros(B, H, dtype=self.dtype), torch.zeros(B, H, dtype=self.dtype))
                for _ in range(self.config.num_layers)]

    def run(self, x, state):
        """Forward, recorded by autograd unless under torch.no_grad(): logits (B, T, V), final state."""
        x = torch.as_tensor(np.asarray(x), dtype=torch.long)
        B, T = x.shape
        if state is None:
            state = self.zero_state(B)
        state = [(torch.as_tensor(h, dtype=self.dtype), torch.as_tensor(c, dtype=self.dtype)) for h, c in state]
        if self.path == "layer":
            h = torch.stack([h for h, _ in state])  # (L, B, H)
            c = torch.stack([c for _, c in state])
            xs = F.one_hot(x, self.config.vocab_size).to(self.dtype)  # (B, T, V)
            hs, (h, c) = self.lstm(xs, (h, c))  # (B, T, H) from the last layer
            return self.head(hs), list(zip(h.unbind(0), c.unbind(0)))
        w, new_state = self.weights, []
        for l, (h, c) in enumerate(state):
            W_x, W_h, b = w[f"lstm.{l}.W_x"], w[f"lstm.{l}.W_h"], w[f"lstm.{l}.b"]
            if l == 0:
                xz = W_x[x.T]  # (T, B, 4H): one-hot x_t @ W_x is a row gather
            else:
                xz = xs @ W_x  # (T, B, 4H): every step in one product
            xs, h, c = lstm_forward(xz + b, h, c, W_h)
            new_state.append((h, c))
        logits = xs @ w["head.W"] + w["head.b"]  # (T, B, V)
        return logits.transpose(0, 1), new_state

    def loss(self, x, y, state):
        """Mean cross-entropy over all B * T positions (a tensor autograd can differentiate), new state."""
        logits, new_state = self.run(x, state)
        y = torch.as_tensor(np.asarray(y), dtype=torch.long)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)), new_state

    def forward(self, x, state=None):
        with torch.no_grad():
            logits, new_state = self.run(x, state)
        return to_numpy(logits), [(to_numpy(h), to_numpy(c)) for h, c in new_state]

    def evaluate(self, x, y, state=None):
        with torch.no_grad():
            return self.loss(x, y, state)[0].item()

    def gradients(self, x, y, state=None):
        self.optimizer.zero_grad(set_to_none=True)
        self.loss(x, y, state)[0].backward()
        if self.path == "cell":
            grads = {name: p.grad for name, p in self.weights.items()}
        else:
            grads = {}
            for l in range(self.config.num_layers):
                grads[f"lstm.{l}.W_x"] = getattr(self.lstm, f"weight_ih_l{l}").grad.T
                grads[f"lstm.{l}.W_h"] = getattr(self.lstm, f"weight_hh_l{l}").grad.T
                grads[f"lstm.{l}.b"] = getattr(self.lstm, f"bias_ih_l{l}").grad  # = dloss/db
            grads["head.W"], grads["head.b"] = self.head.weight.grad.T, self.head.bias.grad
        grads = {name: to_numpy(g) for name, g in grads.items()}
        self.optimizer.zero_grad(set_to_none=True)
        return grads

    def train_step(self, x, y):
        self.optimizer.zero_grad(set_to_none=True)
        loss, new_state = self.loss(x, y, self.state)
        loss.backward()
        if self.config.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.config.clip_norm)
        self.optimizer.step()
        self.state = [(h.detach(), c.detach()) for h, c in new_state]  # truncated BPTT: cut the graph here
        return loss.item()


def to_numpy(t):
    """A numpy copy of tensor t (never a view that a later update would change)."""
    return t.detach().numpy().copy()
