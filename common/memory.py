"""The analytic memory of one training step: what the benchmark holds each worker's peak against
(benchmarks/flops.py) and what `rosetta train` checks a config against before allocating anything
(common/training.py). Framework-free."""

import math

import numpy as np

from common.weights import weight_shapes

MEMORY_FORMULA = ("activation_bytes = itemsize * (L * (7T + 2) * B * H + 2 * T * B * V + P * (2 + slots)): "
                  "per layer the gates (4H), c, tanh(c) and h (3H) of every step and the initial h, c; "
                  "the logits and their softmax; the P parameters, their gradients and the optimizer's "
                  "slots (adam 2, adagrad 1, sgd 0); workspace, framework and data left out")
OPTIMIZER_SLOTS = {"sgd": 0, "adagrad": 1, "adam": 2}  # state tensors of a parameter's shape


def activation_cache_bytes(config):
    """Bytes the forward pass must keep for backward: per layer the gates, c, tanh(c) and h of
    every step plus the initial state, and the logits with their softmax."""
    V, H, L, B, T = (config.vocab_size, config.hidden_size, config.num_layers, config.batch_size,
                     config.seq_length)
    return np.dtype(config.dtype).itemsize * (L * (7 * T + 2) * B * H + 2 * T * B * V)


def parameter_state_bytes(config):
    """Bytes of the parameters, their gradients and the optimizer's slots."""
    P = sum(math.prod(shape) for shape in weight_shapes(config).values())  # the numbers in the weights
    return np.dtype(config.dtype).itemsize * P * (2 + OPTIMIZER_SLOTS[config.optimizer])


def activation_bytes(config):
    """The analytic memory of one training step (MEMORY_FORMULA): activations kept for backward
    plus parameters, gradients and optimizer state. Peak minus idle memory is held against it."""
    return activation_cache_bytes(config) + parameter_state_bytes(config)
