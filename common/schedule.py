"""The learning-rate schedule: linear warm-up, then cosine decay to a floor, computed here and
applied identically by every implementation (numpy's optimizer lr, torch's param_group["lr"],
Keras' optimizer.learning_rate.assign): common/training.py passes learning_rate= to train_step.

    lr = learning_rate(config, step, total_steps)     # step 0-based; the lr of that step's update

    warm-up   step < W:          lr = base * (step + 1) / W
    cosine    W <= step < D:     lr = floor + (base - floor) * (1 + cos(pi * (step - W) / (D - W))) / 2
    after     step >= D:         lr = floor
with base = config.learning_rate, W = config.warmup_steps, D = config.decay_steps (0: the run's
total steps, --iters), floor = base * config.lr_floor. schedule "constant" keeps base after the
warm-up. With schedule "constant" and no warm-up (the defaults) nothing is passed: lr = base.
"""

import math


def scheduled(config):
    """True when the learning rate changes over a run (a warm-up or a decay)."""
    return config.schedule != "constant" or config.warmup_steps > 0


def learning_rate(config, step, total_steps=None):
    """The learning rate of training step `step` (0-based), a python float."""
    base, W = config.learning_rate, config.warmup_steps
    if step < W:
        return base * (step + 1) / W
    if config.schedule == "constant":
        return base
    D = config.decay_steps or total_steps
    if not D:
        raise ValueError("a cosine schedule needs decay_steps or the run's total steps")
    floor = base * config.lr_floor
    if step >= D or D <= W:
        return floor
    return floor + (base - floor) * (1 + math.cos(math.pi * (step - W) / (D - W))) / 2
