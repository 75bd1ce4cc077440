"""PyTorch character-level LSTM: torch.nn.LSTM (path="layer") or the gate equations in an
nn.Module of our own (path="cell"). What matters in PyTorch: only the forward pass is written;
autograd records it as it runs, and loss.backward() is the whole of numpy_impl/model.py's backward.

    model = CharLSTM(config, path="layer")              # an nn.Module; plumbing.py's Interface holds one
    optimizer = make_optimizer(config, model.parameters())
    loss, state = model.train_step(optimizer, x, y, state)   # x, y: LongTensor (B, T); state None: zeros
    logits, state = model(x, state)                     # tensors (B, T, V), [(h, c)] per layer
"""

import torch
import torch.nn.functional as F
from torch import nn

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

    Returns h, c (B, H); W_x, W_h, b are made here, drawn as nn.LSTM draws its own.
    """

    def __init__(self, input_size, hidden_size, dtype, recurrent_activation="sigmoid"):
        super().__init__()
        self.sigma = RECURRENT_ACTIVATIONS[recurrent_activation]
        self.W_x = nn.Parameter(torch.empty(input_size, 4 * hidden_size, dtype=dtype))
        self.W_h = nn.Parameter(torch.empty(hidden_size, 4 * hidden_size, dtype=dtype))
        self.b = nn.Parameter(torch.empty(4 * hidden_size, dtype=dtype))
        for p in self.parameters():  # U(-1/sqrt(H), 1/sqrt(H))
            nn.init.uniform_(p, -hidden_size ** -0.5, hidden_size ** -0.5)

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
class CharLSTM(nn.Module):
    """L stacked LSTM layers of H units and a dense head to V logits, trained with torch.optim."""

    def __init__(self, config, path="layer"):
        super().__init__()
        self.config, self.path = config, path
        dtype = getattr(torch, config.dtype)
        V, H, L = config.vocab_size, config.hidden_size, config.num_layers
        self.layers = nn.ModuleList()  # one module per layer: dropout goes between them
        for l in range(L):
            self.layers.append(lstm_layer(path, V if l == 0 else H, H, dtype, config.recurrent_activation))
        self.head = nn.Linear(H, V, dtype=dtype)

    def zero_state(self, B):
        H = self.config.hidden_size
        zeros = self.head.weight.new_zeros  # the model's dtype and device
        return [(zeros((B, H)), zeros((B, H))) for _ in range(self.config.num_layers)]

    # --- forward
    def forward(self, x, state=None, masks=None):
        """Logits (B, T, V) and the new state [(h, c)] per layer, recorded by autograd; x: ids, a LongTensor (B, T).
        masks: common/dropout.py's [(B, T, H)] per layer, multiplying each layer's output; None: none."""
        V = self.config.vocab_size
        if state is None:
            state = self.zero_state(x.shape[0])
        hs = F.one_hot(x, V).to(self.head.weight.dtype)  # (B, T, V): the input of layer 0, one-hot
        new_state = []
        for l, (h, c) in enumerate(state):
            if self.path == "layer":  # nn.LSTM's state has a leading axis over its layers: (1, B, H)
                hs, (h, c) = self.layers[l](hs, (h[None], c[None]))
                h, c = h[0], c[0]
            else:
                hs, h, c = self.layers[l](hs, (h, c))  # (B, T, H): the input of layer l + 1
            if masks is not None:
                hs = hs * masks[l]  # dropout on the input of layer l + 1 or the head
            new_state.append((h, c))
        logits = self.head(hs)  # (B, T, V)
        return logits, new_state

    # --- loss
    def loss(self, x, y, state, masks=None):
        """Mean cross-entropy over all B * T positions (config.target "all") or the B last ones
        ("last", y (B, 1)), the new state, and a graph autograd can walk back."""
        logits, new_state = self(x, state, masks)
        if self.config.target == "last":  # many-to-one: the loss sees logits[:, -1:] only
            logits = logits[:, -1:]  # (B, 1, V)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        return loss, new_state

    def evaluate(self, x, y, state=None):
        """Mean cross-entropy over the scored positions (see loss), a python float; no update."""
        with torch.no_grad():  # nothing to differentiate: autograd records nothing
            return self.loss(x, y, state)[0].item()

    # --- gradients
    def gradients(self, x, y, state=None, masks=None):
        """dict parameter name -> d loss / d parameter (tensors); no update. masks: as train_step's."""
        self.zero_grad(set_to_none=True)
        loss, _ = self.loss(x, y, state, masks)
        loss.backward()  # autograd fills p.grad: the whole of numpy's backward
        grads = {name: p.grad for name, p in self.named_parameters() if p.grad is not None}
        return grads

    # --- train step
    def train_step(self, optimizer, x, y, state, masks=None):
        """One optimizer update from the carried state (clipped by global norm when clip_norm > 0,
        by value when clip_value > 0); returns the loss before it and carries the new state
        (truncated BPTT), detached, for the caller to pass back, as pytorch/examples trains. masks:
        the step's dropout masks (common/dropout.py); learning_rate: torch_impl/plumbing.py's."""
        optimizer.zero_grad(set_to_none=True)
        loss, new_state = self.loss(x, y, state, masks)
        loss.backward()
        if self.config.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.parameters(), self.config.clip_norm)
        if self.config.clip_value > 0:
            torch.nn.utils.clip_grad_value_(self.parameters(), self.config.clip_value)  # every element into [-V, V]
        optimizer.step()
        return loss.item(), [(h.detach(), c.detach()) for h, c in new_state]  # cut the graph here
