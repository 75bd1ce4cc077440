"""What numpy_impl/model.py's CharLSTM needs beyond the lesson: the training state that exact
resume saves (common/checkpoint.py), kept here so that model.py reads like its torch and Keras
twins. model.py calls these from one-line methods of the same names."""

import numpy as np

from common.checkpoint import check_training_state
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
