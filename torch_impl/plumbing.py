"""What the shared loop, the benchmark and the checkpoints need from torch_impl/model.py's CharLSTM
beyond the lesson, kept here so that model.py reads like its numpy and Keras twins: numpy in and
out, the interchange names and layouts (nn.LSTM and nn.Linear store each W transposed), the path
and device checks, the carried state, the learning_rate= override and the training state that
exact resume saves (common/checkpoint.py).

    interface = Interface(config, init_weights(config), path="layer", device="cpu")
    loss = interface.train_step(x, y)                   # x, y: int np (B, T)
    logits, state = interface.forward(x)                # np (B, T, V), [(h, c)] per layer
    interface.model                                     # the CharLSTM, an nn.Module
"""

import numpy as np
import torch

from common.checkpoint import check_training_state
from common.errors import ConfigError
from common.weights import check_weights
from .model import PATHS, CharLSTM, make_optimizer

# the interchange slot name -> torch.optim's key in optimizer.state[p]
SLOTS = {"sgd": {}, "adagrad": {"sum": "sum"}, "adam": {"m": "exp_avg", "v": "exp_avg_sq"}}


def to_numpy(t):
    """A numpy copy of tensor t on the CPU (never a view that a later update would change)."""
    return t.detach().cpu().numpy().copy()


def parameter_names(path, num_layers):
    """interchange name -> the CharLSTM's parameter name (its state_dict key). On path "layer"
    nn.LSTM splits b into bias_ih and bias_hh: b goes into bias_ih, bias_hh stays 0 and frozen."""
    names = {}
    for l in range(num_layers):
        if path == "layer":
            W_x, W_h, b = (f"layers.{l}.{w}_l0" for w in ("weight_ih", "weight_hh", "bias_ih"))
        else:
            W_x, W_h, b = (f"layers.{l}.cell.{w}" for w in ("W_x", "W_h", "b"))
        names.update({f"lstm.{l}.W_x": W_x, f"lstm.{l}.W_h": W_h, f"lstm.{l}.b": b})
    return {**names, "head.W": "head.weight", "head.b": "head.bias"}


def check_device(device):
    """torch.device of `device` (None: the CPU); one that torch does not have here is a ConfigError."""
    name = "cpu" if device is None else str(device)
    try:
        device = torch.device(name)
        torch.empty(0, device=device)  # an unbuilt backend or a missing GPU fails here
    except (RuntimeError, AssertionError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"torch has no device {name!r} here: {reason}; choose cpu"
                          f"{' or cuda' if torch.cuda.is_available() else ''}.") from None
    return device


class Interface:
    """A CharLSTM (torch_impl/model.py) and its torch.optim optimizer behind the numpy interface
    (docs/DESIGN.md): numpy in and out, the interchange weights, the carried state, resume."""

    Module = CharLSTM  # the nn.Module built; torch_impl/parallel.py's subclass sends its loss through DDP

    def __init__(self, config, weights, path="layer", device=None):
        if path not in PATHS:
            raise ConfigError(f"torch has no path {path!r}; choose one of {', '.join(PATHS)}.")
        if path == "layer" and config.recurrent_activation != "sigmoid":
            raise ConfigError(f"torch's nn.LSTM (path layer) has no recurrent_activation {config.recurrent_activation}, "
                              f"only sigmoid; use --path cell.")
        check_weights(weights, config)
        self.config, self.path = config, path
        self.device = check_device(device)
        self.dtype = getattr(torch, config.dtype)
        self.model = self.Module(config, path).to(self.device)
        # params: interchange name -> the model's parameter, updated in place by the optimizer
        self.params = {name: self.model.get_parameter(key) for name, key in parameter_names(path, config.num_layers).items()}
        with torch.no_grad():  # a copy into each parameter, through the transposed view if any
            for name, p in self.params.items():
                self.interchange(name, p).copy_(torch.as_tensor(np.asarray(weights[name])))
        self.optimizer = make_optimizer(config, self.model.parameters())  # torch.optim: SGD, Adagrad, Adam
        self.reset_state()

    def interchange(self, name, t):
        """t (parameter name's or its gradient's) in the interchange layout: torch.nn stores each W
        transposed, (out, in); our LSTMCell stores (in, 4H) as the interchange does."""
        return t.T if t.ndim == 2 and (self.path == "layer" or name == "head.W") else t

    def get_weights(self):
        """The weights in the interchange layout: dict name -> np.ndarray (copies), config.dtype."""
        return {name: to_numpy(self.interchange(name, p)) for name, p in self.params.items()}

    def reset_state(self):
        """Zero the state carried from one train_step to the next (a new epoch)."""
        self.state = self.zero_state(self.config.batch_size)

    def zero_state(self, B):
        return self.model.zero_state(B)

    def ids(self, x):
        """int np (B, T) -> a LongTensor on the model's device."""
        return torch.as_tensor(np.asarray(x), dtype=torch.long, device=self.device)

    def tensors(self, arrays):
        """A state [(h, c)] per layer or dropout masks [(B, T, H)] as tensors in config.dtype on the
        model's device; None stays None."""
        if arrays is None:
            return None
        as_tensor = lambda a: torch.as_tensor(a, dtype=self.dtype, device=self.device)  # noqa: E731
        return [tuple(map(as_tensor, a)) if isinstance(a, (tuple, list)) else as_tensor(a) for a in arrays]

    def forward(self, x, state=None):
        """Logits np (B, T, V) in config.dtype and the new state [(h, c)] per layer; no update."""
        with torch.no_grad():  # nothing to differentiate: autograd records nothing
            logits, new_state = self.model(self.ids(x), self.tensors(state))
        return to_numpy(logits), [(to_numpy(h), to_numpy(c)) for h, c in new_state]

    def loss(self, x, y, state, masks=None):
        """The model's loss (a tensor autograd can walk back) and new state, from numpy inputs."""
        return self.model.loss(self.ids(x), self.ids(y), self.tensors(state), self.tensors(masks))

    def evaluate(self, x, y, state=None):
        """Mean cross-entropy over the scored positions, a python float; no update."""
        return self.model.evaluate(self.ids(x), self.ids(y), self.tensors(state))

    def gradients(self, x, y, state=None, masks=None):
        """dict interchange name -> np.ndarray of d loss / d weight; no update. masks: as train_step's."""
        grads = self.model.gradients(self.ids(x), self.ids(y), self.tensors(state), self.tensors(masks))
        keys = parameter_names(self.path, self.config.num_layers)
        return {name: to_numpy(self.interchange(name, grads[keys[name]])) for name in self.params}

    def train_step(self, x, y, masks=None, learning_rate=None):
        """One optimizer update from the carried state (model.py's CharLSTM.train_step); returns the
        loss before it and carries the new state (truncated BPTT); with target "last" every call
        starts from zeros. masks: the step's dropout masks, learning_rate: the step's rate
        (common/dropout.py, common/schedule.py)."""
        if self.config.target == "last":
            self.reset_state()  # many-to-one: every window from a zero state, nothing carried
        if learning_rate is not None:
            for group in self.optimizer.param_groups:  # the scheduled rate of this step
                group["lr"] = learning_rate
        loss, self.state = self.model.train_step(self.optimizer, self.ids(x), self.ids(y), self.state,
                                                 self.tensors(masks))
        return loss

    def get_training_state(self):
        """What exact resume needs beyond the weights: dict name -> np.ndarray, the optimizer's state
        ("optim.m/lstm.0.W_x", "optim.v/...", "optim.sum/..." for Adagrad, "optim.step") and the
        carried state ("state.h/0", "state.c/0", ...), interchange layout."""
        slots = SLOTS[self.config.optimizer]
        tensors = {}
        for name, p in self.params.items():
            state = self.optimizer.state[p]  # empty before Adam's first step: zeros
            for slot, key in slots.items():
                tensors[f"optim.{slot}/{name}"] = to_numpy(self.interchange(name, state.get(key, torch.zeros_like(p))))
        if self.config.optimizer == "adam":
            steps = [int(self.optimizer.state[p].get("step", 0)) for p in self.params.values()]
            tensors["optim.step"] = np.array(steps[0], np.int64)
        for l, (h, c) in enumerate(self.state):
            tensors[f"state.h/{l}"], tensors[f"state.c/{l}"] = to_numpy(h), to_numpy(c)
        return tensors

    def set_training_state(self, tensors):
        """The inverse of get_training_state; a missing, extra or misshaped tensor is a CheckpointError."""
        check_training_state(tensors, self.config)
        slots = SLOTS[self.config.optimizer]
        scalar = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32  # torch.optim's step
        with torch.no_grad():
            for name, p in self.params.items():
                state = self.optimizer.state[p]
                for slot, key in slots.items():
                    state[key] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    self.interchange(name, state[key]).copy_(torch.as_tensor(tensors[f"optim.{slot}/{name}"]))
                if self.config.optimizer == "adam":
                    state["step"] = torch.tensor(float(tensors["optim.step"]), dtype=scalar)
        self.state = self.tensors([(np.array(tensors[f"state.h/{l}"]), np.array(tensors[f"state.c/{l}"]))
                                   for l in range(self.config.num_layers)])
