"""What torch_impl/model.py's CharLSTM needs beyond the lesson: the training state that exact
resume saves (common/checkpoint.py), to_numpy, torch.optim's slots read and written in the interchange
layout, kept here so that model.py reads like its numpy and Keras twins. model.py calls these
from one-line methods of the same names."""

import numpy as np
import torch

from common.checkpoint import check_training_state

# the interchange slot name -> torch.optim's key in optimizer.state[p]
SLOTS = {"sgd": {}, "adagrad": {"sum": "sum"}, "adam": {"m": "exp_avg", "v": "exp_avg_sq"}}


def to_numpy(t):
    """A numpy copy of tensor t (never a view that a later update would change)."""
    return t.detach().numpy().copy()


def get_training_state(model):
    """What exact resume needs beyond the weights: dict name -> np.ndarray, the optimizer's state
    ("optim.m/lstm.0.W_x", "optim.v/...", "optim.sum/..." for Adagrad, "optim.step") and the
    carried state ("state.h/0", "state.c/0", ...), interchange layout."""
    slots = SLOTS[model.config.optimizer]
    tensors = {}
    for name, p in model.params.items():
        state = model.optimizer.state[p]  # empty before Adam's first step: zeros
        for slot, key in slots.items():
            tensors[f"optim.{slot}/{name}"] = to_numpy(model.interchange(name, state.get(key, torch.zeros_like(p))))
    if model.config.optimizer == "adam":
        steps = [int(model.optimizer.state[p].get("step", 0)) for p in model.params.values()]
        tensors["optim.step"] = np.array(steps[0], np.int64)
    for l, (h, c) in enumerate(model.state):
        tensors[f"state.h/{l}"], tensors[f"state.c/{l}"] = to_numpy(h), to_numpy(c)
    return tensors


def set_training_state(model, tensors):
    """The inverse of get_training_state; a missing, extra or misshaped tensor is a CheckpointError."""
    check_training_state(tensors, model.config)
    slots = SLOTS[model.config.optimizer]
    scalar = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32  # torch.optim's step
    with torch.no_grad():
        for name, p in model.params.items():
            state = model.optimizer.state[p]
            for slot, key in slots.items():
                state[key] = torch.zeros_like(p, memory_format=torch.preserve_format)
                model.interchange(name, state[key]).copy_(torch.as_tensor(tensors[f"optim.{slot}/{name}"]))
            if model.config.optimizer == "adam":
                state["step"] = torch.tensor(float(tensors["optim.step"]), dtype=scalar)
    model.state = [(torch.as_tensor(np.array(tensors[f"state.h/{l}"]), dtype=model.dtype),
                    torch.as_tensor(np.array(tensors[f"state.c/{l}"]), dtype=model.dtype))
                   for l in range(model.config.num_layers)]
