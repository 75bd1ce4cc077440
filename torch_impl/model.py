"""PyTorch character-level LSTM: torch.nn.LSTM (path="layer") or the gate equations in an
nn.Module of our own (path="cell"). What matters in PyTorch: only the forward pass is written;
autograd records it as it runs, and loss.backward() is the whole of numpy_impl's lstm_backward.

    model = CharLSTM(config, init_weights(config))     # path: the first of PATHS unless given
    loss = model.train_step(x, y)                       # x, y: int (B, T)
    logits, state = model.forward(x)                    # np (B, T, V), [(h, c)] per layer
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common.errors import ConfigError
from common.weights import check_weights
from . import plumbing
from .plumbing import to_numpy  # a numpy copy of a tensor: t.detach().numpy().copy()

PATHS = ("layer", "cell")


# --- helpers
# torch helpers: the library's sigmoid and tanh, hard_sigmoid written out, and the optimizer
sigmoid, tanh = torch.sigmoid, torch.tanh


def hard_sigmoid(z):
    """Keras 3's hard sigmoid, relu6(z + 3) / 6: 0 up to z = -3, 1 from z = 3, a line between.
    Written out in all three: torch's F.hardsigmoid (Keras' on torch) scales its gradient by a float32 1/6."""
    return F.relu6(z + 3) / 6


# the activation of the i, f and o gates, config.recurrent_activation (g keeps tanh)
RECURRENT_ACTIVATIONS = {"sigmoid": sigmoid, "hard_sigmoid": hard_sigmoid}


def make_optimizer(config, params):
    """torch.optim's own optimizer for config.optimizer, on numpy_impl.optim's formulas "pytorch"
    (numpy_impl/optim.py FORMULAS); clipping is a call of its own, in train_step."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.learning_rate)
    if config.optimizer == "adagrad":
        return torch.optim.Adagrad(params, lr=config.learning_rate, initial_accumulator_value=0.0, eps=1e-10)
    return torch.optim.Adam(params, lr=config.learning_rate, betas=(0.9, 0.999), eps=1e-8)


# --- step
# One time step of one layer, in rows like the interface: h, c (B, H); gates i, f, g, o stacked
# along the last axis of z (B, 4H):
#   z = x_t @ W_x + h_prev @ W_h + b ;  c = f * c_prev + i * g ;  h = o * tanh(c)

class LSTMCell(nn.Module):
    """One step. x_t (B, D); h_prev, c_prev (B, H); W_x (D, 4H), W_h (H, 4H), b (4H,).

    Returns h, c (B, H); W_x, W_h, b are made here and filled by CharLSTM.
    """

    def __init__(self, input_size, hidden_size, dtype, recurrent_activation="sigmoid"):
        super().__init__()
        self.sigma = RECURRENT_ACTIVATIONS[recurrent_activation]
        self.W_x = nn.Parameter(torch.empty(input_size, 4 * hidden_size, dtype=dtype))
        self.W_h = nn.Parameter(torch.empty(hidden_size, 4 * hidden_size, dtype=dtype))
        self.b = nn.Parameter(torch.empty(4 * hidden_size, dtype=dtype))

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
        return h, c


# --- layer over time

class LSTMLayer(nn.Module):
    """One layer over T steps. xs (B, T, D) the inputs; h, c (B, H) the initial state.

    Returns hs (B, T, H) with hs[:, t] = h_t, and the last h, c.
    """

    def __init__(self, input_size, hidden_size, dtype, recurrent_activation="sigmoid"):
        super().__init__()
        self.cell = LSTMCell(input_size, hidden_size, dtype, recurrent_activation)

    def forward(self, xs, state):
        h, c = state
        hs = []
        for t in range(xs.shape[1]):
            h, c = self.cell(xs[:, t], (h, c))
            hs.append(h)
        return torch.stack(hs, dim=1), h, c


def lstm_layer(path, input_size, hidden_size, dtype, recurrent_activation="sigmoid"):
    """Path "layer" is torch.nn.LSTM, the library's own (its state has a leading axis over its
    layers, (1, B, H)); path "cell" is LSTMLayer above."""
    if path == "layer":  # bias_hh frozen at 0: training both halves of b would move it twice as far
        lstm = nn.LSTM(input_size, hidden_size, batch_first=True, dtype=dtype)
        lstm.bias_hh_l0.requires_grad_(False).zero_()
        return lstm
    return LSTMLayer(input_size, hidden_size, dtype, recurrent_activation)


# --- model
class CharLSTM:
    """L stacked LSTM layers of H units and a dense head to V logits, trained with torch.optim."""

    def __init__(self, config, weights, path="layer"):
        if path not in PATHS:
            raise ConfigError(f"torch has no path {path!r}; choose one of {', '.join(PATHS)}.")
        if path == "layer" and config.recurrent_activation != "sigmoid":
            raise ConfigError(f"torch's nn.LSTM (path layer) has no recurrent_activation {config.recurrent_activation}, "
                              f"only sigmoid; use --path cell.")
        check_weights(weights, config)
        self.config, self.path = config, path
        self.dtype = getattr(torch, config.dtype)
        V, H, L = config.vocab_size, config.hidden_size, config.num_layers
        # params: interchange name -> torch parameter, updated in place by the optimizer
        self.params = {}
        self.layers = []  # one object per layer: dropout goes between them
        for l in range(L):
            lstm = lstm_layer(path, V if l == 0 else H, H, self.dtype, config.recurrent_activation)
            self.layers.append(lstm)
            if path == "layer":  # nn.LSTM stores each W transposed, (out, in) (DESIGN.md)
                W_x, W_h, b = lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0
            else:
                W_x, W_h, b = lstm.cell.W_x, lstm.cell.W_h, lstm.cell.b
            self.params.update({f"lstm.{l}.W_x": W_x, f"lstm.{l}.W_h": W_h, f"lstm.{l}.b": b})
        self.head = nn.Linear(H, V, dtype=self.dtype)  # stores W transposed too
        self.params["head.W"], self.params["head.b"] = self.head.weight, self.head.bias
        with torch.no_grad():  # a copy into each parameter, through the transposed view if any
            for name, p in self.params.items():
                self.interchange(name, p).copy_(torch.as_tensor(np.asarray(weights[name])))
        self.optimizer = make_optimizer(config, list(self.params.values()))  # torch.optim: SGD, Adagrad, Adam
        self.reset_state()

    def interchange(self, name, t):
        """t (parameter name's or its gradient's) in the interchange layout: torch.nn stores each W
        transposed, (out, in) (DESIGN.md); our LSTMCell stores (in, 4H) as the interchange does."""
        return t.T if t.ndim == 2 and (self.path == "layer" or name == "head.W") else t

    def get_weights(self):
        """The weights in the interchange layout: dict name -> np.ndarray (copies), config.dtype."""
        return {name: to_numpy(self.interchange(name, p)) for name, p in self.params.items()}

    def reset_state(self):
        """Zero the state carried from one train_step to the next (a new epoch)."""
        self.state = self.zero_state(self.config.batch_size)

    def zero_state(self, B):
        H = self.config.hidden_size
        return [(torch.zeros((B, H), dtype=self.dtype), torch.zeros((B, H), dtype=self.dtype)) for _ in range(self.config.num_layers)]

    # --- forward
    def run(self, x, state, masks=None):
        """Forward, recorded by autograd: logits (B, T, V) and the new state [(h, c)] per layer.
        masks: common/dropout.py's [(B, T, H)] per layer, multiplying each layer's output; None: none."""
        x = torch.as_tensor(np.asarray(x), dtype=torch.long)
        V = self.config.vocab_size
        if state is None:
            state = self.zero_state(x.shape[0])
        state = [(torch.as_tensor(h, dtype=self.dtype), torch.as_tensor(c, dtype=self.dtype)) for h, c in state]
        hs = F.one_hot(x, V).to(self.dtype)  # (B, T, V): the input of layer 0, one-hot
        new_state = []
        for l, (h, c) in enumerate(state):
            if self.path == "layer":  # nn.LSTM's state has a leading axis over its layers: (1, B, H)
                hs, (h, c) = self.layers[l](hs, (h[None], c[None]))
                h, c = h[0], c[0]
            else:
                hs, h, c = self.layers[l](hs, (h, c))  # (B, T, H): the input of layer l + 1
            if masks is not None:
                hs = hs * torch.as_tensor(masks[l])  # dropout on the input of layer l + 1 or the head
            new_state.append((h, c))
        logits = self.head(hs)  # (B, T, V)
        return logits, new_state

    def forward(self, x, state=None):
        """Logits np (B, T, V) in config.dtype and the new state [(h, c)] per layer; no update."""
        with torch.no_grad():  # nothing to differentiate: autograd records nothing
            logits, new_state = self.run(x, state)
        return to_numpy(logits), [(to_numpy(h), to_numpy(c)) for h, c in new_state]

    # --- loss
    def loss(self, x, y, state, masks=None):
        """Mean cross-entropy over all B * T positions (config.target "all") or the B last ones
        ("last", y (B, 1)), the new state, and a graph autograd can walk back."""
        logits, new_state = self.run(x, state, masks)
        if self.config.target == "last":  # many-to-one: the loss sees logits[:, -1:] only
            logits = logits[:, -1:]  # (B, 1, V)
        y = torch.as_tensor(np.asarray(y), dtype=torch.long)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        return loss, new_state

    def evaluate(self, x, y, state=None):
        """Mean cross-entropy over the scored positions (see loss), a python float; no update."""
        with torch.no_grad():
            return self.loss(x, y, state)[0].item()

    # --- gradients
    def gradients(self, x, y, state=None, masks=None):
        """dict interchange name -> np.ndarray of d loss / d weight; no update. masks: as train_step's."""
        self.optimizer.zero_grad(set_to_none=True)
        loss, _ = self.loss(x, y, state, masks)
        loss.backward()  # autograd fills p.grad: the whole of numpy's backward
        grads = {name: to_numpy(self.interchange(name, p.grad)) for name, p in self.params.items()}
        self.optimizer.zero_grad(set_to_none=True)
        return grads

    # --- train step
    def train_step(self, x, y, masks=None, learning_rate=None):
        """One optimizer update from the carried state (clipped by global norm when clip_norm > 0,
        by value when clip_value > 0); returns the loss before it and carries the new state
        (truncated BPTT); with target "last" every call starts from zeros. masks: the step's
        dropout masks, learning_rate: the step's rate (common/dropout.py, common/schedule.py)."""
        if self.config.target == "last":
            self.reset_state()  # many-to-one: every window from a zero state, nothing carried
        if learning_rate is not None:
            for group in self.optimizer.param_groups:  # the scheduled rate of this step
                group["lr"] = learning_rate
        self.optimizer.zero_grad(set_to_none=True)
        loss, new_state = self.loss(x, y, self.state, masks)
        loss.backward()
        if self.config.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.params.values(), self.config.clip_norm)
        if self.config.clip_value > 0:
            torch.nn.utils.clip_grad_value_(self.params.values(), self.config.clip_value)  # every element into [-V, V]
        self.optimizer.step()
        self.state = [(h.detach(), c.detach()) for h, c in new_state]  # cut the graph here
        return loss.item()

    def get_training_state(self):
        """What exact resume needs beyond the weights (common/checkpoint.py): dict name -> np.ndarray."""
        return plumbing.get_training_state(self)  # plumbing.py beside this file

    def set_training_state(self, tensors):
        """The inverse of get_training_state; a missing, extra or misshaped tensor is a CheckpointError."""
        plumbing.set_training_state(self, tensors)
