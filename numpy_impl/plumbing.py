"""What numpy_impl/model.py's CharLSTM needs beyond the lesson, kept here so that model.py reads like
its torch and Keras twins: the path and weight checks, the interchange weights, the carried state, the
learning_rate= override and the training state that exact resume saves (common/checkpoint.py).
model.py's CharLSTM inherits Interface; numpy_impl/fast.py calls the training-state functions."""

import numpy as np

from common.checkpoint import check_training_state
from common.errors import ConfigError
from common.weights import check_weights
from numpy_impl.optim import optimizer_state, set_optimizer_state


def get_training_state(model):
    """What exact resume needs beyond the weights: dict name -> np.ndarray, the optimizer's state
    ("optim.m/lstm.0.W_x", "optim.v/...", "optim.sum/..." for Adagrad, "optim.step") and the
    carried state ("state.h/0", "state.c/0", ...), interchange layout."""
    tensors = optimizer_state(model.optimizer, model.params)  # numpy_impl/optim.py
    for l, (h, c) in enumerate(model.state):
        tensors[f"state.h/{l}"], tensors[f"state.c/{l}"] = np.array(h), np.array(c)
    return tensors


def set_training_state(model, tensors):
    """The inverse of get_training_state; a missing, extra or misshaped tensor is a CheckpointError."""
    check_training_state(tensors, model.config)
    set_optimizer_state(model.optimizer, tensors, model.params)
    model.state = [(np.array(tensors[f"state.h/{l}"], model.dtype), np.array(tensors[f"state.c/{l}"], model.dtype))
                   for l in range(model.config.num_layers)]


def check(config, weights, path, paths):
    """A path numpy_impl/model.py does not have is a ConfigError; so are weights that do not fit config."""
    if path not in paths:
        raise ConfigError(f"numpy has no path {path!r}; choose one of {', '.join(paths)}.")
    check_weights(weights, config)


class Interface:
    """The numpy interface's methods that are not the lesson, for numpy_impl/model.py's CharLSTM
    (its self.config, self.params, self.optimizer, self.state and zero_state)."""

    def load(self, weights):
        """dict interchange name -> the model's array (each layer's cell.W_x, cell.W_h, cell.b, then
        the head's W and b), every array filled from `weights`."""
        params = {}
        for l, layer in enumerate(self.layers):
            params.update({f"lstm.{l}.W_x": layer.cell.W_x, f"lstm.{l}.W_h": layer.cell.W_h, f"lstm.{l}.b": layer.cell.b})
        params["head.W"], params["head.b"] = self.head
        for name, p in params.items():
            p[...] = np.asarray(weights[name])
        return params

    def get_weights(self):
        """The weights in the interchange layout: dict name -> np.ndarray (copies), config.dtype."""
        return {name: p.copy() for name, p in self.params.items()}

    def reset_state(self):
        """Zero the state carried from one train_step to the next (a new epoch)."""
        self.state = self.zero_state(self.config.batch_size)

    def start_step(self, learning_rate=None):
        """Before a train_step: with target "last" every window from a zero state (nothing carried),
        and the scheduled rate of this step (common/schedule.py) if given."""
        if self.config.target == "last":
            self.reset_state()
        if learning_rate is not None:
            self.optimizer.lr = learning_rate

    def get_training_state(self):
        """What exact resume needs beyond the weights (common/checkpoint.py): dict name -> np.ndarray."""
        return get_training_state(self)

    def set_training_state(self, tensors):
        """The inverse of get_training_state; a missing, extra or misshaped tensor is a CheckpointError."""
        set_training_state(self, tensors)
