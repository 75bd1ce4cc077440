"""SGD, Adagrad, Adam, and clipping by global norm or by value, written by hand in numpy.

    optimizer = make_optimizer(config)                       # config.optimizer, config.learning_rate
    grads, norm = clip_by_global_norm(grads, config.clip_norm)   # when clip_norm > 0, or
    grads = clip_by_value(grads, config.clip_value)              # when clip_value > 0
    optimizer.step(params, grads)                            # updates the arrays in place

At most one clipping is on: Keras 3's optimizers refuse clipvalue together with clipnorm or
global_clipnorm (keras/src/optimizers/base_optimizer.py), while torch leaves the order of
clip_grad_norm_ and clip_grad_value_ to the caller, so common.config.Config refuses clip_value and
clip_norm both above 0 rather than pick an order Keras cannot follow.

Hyper-parameters are fixed for all three frameworks: Adam beta1=0.9, beta2=0.999, eps=1e-8;
Adagrad eps=1e-10 with the accumulator starting at 0; SGD without momentum.

Two formulas (FORMULAS), because PyTorch and Keras 3 do not compute Adam, Adagrad and the global
clipping norm the same way. Each is copied operation by operation from the installed source, so
that numpy matches either framework to 1e-9 in float64:

    "pytorch" (the default; Adam is the paper's Algorithm 1)
        Adam      w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
        Adagrad   w -= lr * g / (sqrt(s) + eps)
        clipping  g *= min(max_norm / (norm + 1e-6), 1)
    "keras" (epsilon outside the bias correction for Adam, inside the square root for Adagrad)
        Adam      w -= (m * lr * sqrt(1 - b2^t) / (1 - b1^t)) / (sqrt(v) + eps)
        Adagrad   w -= lr * g / sqrt(s + eps)
        clipping  g *= max_norm * min(1 / norm, 1 / max_norm)      (always multiplied)
    Clipping by value is the same in both: every element into [-V, V].

Arrays keep their dtype: python-float constants do not upcast float32 arrays (numpy 2 rules).
"""

import math

import numpy as np

from common.errors import ConfigError

BETA1, BETA2, ADAM_EPS = 0.9, 0.999, 1e-8
ADAGRAD_EPS = 1e-10
CLIP_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_ adds it to the norm


# ---------------------------------------------------------------------------------------------
# Clipping by global L2 norm over all gradient tensors

def clip_by_global_norm(grads, max_norm, eps=CLIP_EPS):
    """(grads, norm): PyTorch's torch.nn.utils.clip_grad_norm_ (torch/nn/utils/clip_grad.py).

    norm = sqrt(sum_k ||g_k||^2); every g is scaled in place by min(max_norm / (norm + eps), 1),
    which changes nothing unless the norm exceeds max_norm. max_norm 0 turns clipping off.
    """
    norms = [np.sqrt(np.vdot(g, g)) for g in grads.values()]  # torch: the norm of the norms
    norm = np.sqrt(np.vdot(norms, norms))
    if max_norm > 0:
        scale = np.minimum(max_norm / (norm + eps), 1.0)  # NaN for a non-finite norm, as torch
        if scale != 1.0:  # torch multiplies by 1.0 otherwise: the same numbers
            for g in grads.values():
                g *= scale
    return grads, norm


def keras_clip_by_global_norm(grads, max_norm):
    """(grads, norm): Keras 3's clip_by_global_norm (keras/src/optimizers/base_optimizer.py).

    norm = sqrt(sum_k sum(g_k^2)); scale = max_norm * min(1 / norm, 1 / max_norm), applied
    always (it is 1 up to rounding when norm <= max_norm); (norm - norm) makes a non-finite norm
    give NaN. max_norm 0 turns clipping off (Keras: global_clipnorm=None).
    """
    norm = np.sqrt(np.sum(np.stack([np.sum(np.square(g)) for g in grads.values()])))
    if max_norm > 0:
        scale = max_norm * np.minimum(1.0 / norm, 1.0 / max_norm) + (norm - norm)
        for g in grads.values():
            g *= scale
    return grads, norm


def clip_by_value(grads, clip_value):
    """grads with every element clipped in place to [-clip_value, clip_value]; 0 turns it off.

    torch.nn.utils.clip_grad_value_ (clamp_min_ then clamp_max_) and Keras 3's clipvalue
    (ops.clip(g, -v, v)) compute the same numbers; a NaN stays NaN in all three.
    """
    if clip_value > 0:
        for g in grads.values():
            np.clip(g, -clip_value, clip_value, out=g)
    return grads


# ---------------------------------------------------------------------------------------------
# Optimizers: .step(params, grads) updates every params[name] in place

class SGD:
    """w -= lr * g. torch.optim.SGD (p.add_(g, alpha=-lr)) and Keras' SGD (w -= g * lr) agree."""

    def __init__(self, lr):
        self.lr = lr

    def step(self, params, grads):
        for name, g in grads.items():
            params[name] -= self.lr * g


class Adagrad:
    """PyTorch's Adagrad (torch/optim/adagrad.py, _single_tensor_adagrad, lr_decay 0):

    s += g * g ;  w += -lr * g / (sqrt(s) + eps)
    """

    def __init__(self, lr, eps=ADAGRAD_EPS):
        self.lr, self.eps = lr, eps
        self.s = {}  # name -> sum of squared gradients, starting at 0

    def step(self, params, grads):
        for name, g in grads.items():
            s = self.s.setdefault(name, np.zeros_like(g))
            s += g * g
            params[name] += -self.lr * g / (np.sqrt(s) + self.eps)


class KerasAdagrad(Adagrad):
    """Keras 3's Adagrad (keras/src/optimizers/adagrad.py, update_step): epsilon inside the root.

    s += g^2 ;  w -= (lr * g) / sqrt(s + eps)
    """

    def step(self, params, grads):
        for name, g in grads.items():
            s = self.s.setdefault(name, np.zeros_like(g))
            s += np.square(g)
            params[name] -= (self.lr * g) / np.sqrt(s + self.eps)


class Adam:
    """PyTorch's Adam (torch/optim/adam.py, _single_tensor_adam, not capturable):

    m = lerp(m, g, 1 - b1) = m + (1 - b1) * (g - m) ;  v = v * b2 + (1 - b2) * g * g
    step_size = lr / (1 - b1^t) ;  denom = sqrt(v) / sqrt(1 - b2^t) + eps
    w += -step_size * m / denom
    which is the Adam paper's w -= lr * m_hat / (sqrt(v_hat) + eps).
    """

    def __init__(self, lr, beta1=BETA1, beta2=BETA2, eps=ADAM_EPS):
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.t = 0
        self.m, self.v = {}, {}  # name -> first and second moment, starting at 0

    def moments(self, name, g):
        if name not in self.m:
            self.m[name], self.v[name] = np.zeros_like(g), np.zeros_like(g)
        return self.m[name], self.v[name]

    def step(self, params, grads):
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        step_size = self.lr / (1 - b1 ** self.t)
        bias_correction2_sqrt = (1 - b2 ** self.t) ** 0.5
        for name, g in grads.items():
            m, v = self.moments(name, g)
            m += (1 - b1) * (g - m)
            v *= b2
            v += (1 - b2) * g * g
            denom = np.sqrt(v) / bias_correction2_sqrt + self.eps
            params[name] += -step_size * m / denom


class KerasAdam(Adam):
    """Keras 3's Adam (keras/src/optimizers/adam.py, update_step): epsilon outside the bias
    correction, which is folded into the step size alpha.

    alpha = lr * sqrt(1 - b2^t) / (1 - b1^t)
    m += (g - m) * (1 - b1) ;  v += (g^2 - v) * (1 - b2)
    w -= (m * alpha) / (sqrt(v) + eps)
    """

    def step(self, params, grads):
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        alpha = self.lr * math.sqrt(1 - b2 ** self.t) / (1 - b1 ** self.t)
        for name, g in grads.items():
            m, v = self.moments(name, g)
            m += (g - m) * (1 - b1)
            v += (np.square(g) - v) * (1 - b2)
            params[name] -= (m * alpha) / (np.sqrt(v) + self.eps)


FORMULAS = {
    "pytorch": {"sgd": SGD, "adagrad": Adagrad, "adam": Adam, "clip": clip_by_global_norm, "clip_value": clip_by_value},
    "keras": {"sgd": SGD, "adagrad": KerasAdagrad, "adam": KerasAdam, "clip": keras_clip_by_global_norm,
              "clip_value": clip_by_value},
}


def check_formula(formula):
    if formula not in FORMULAS:
        raise ConfigError(f"unknown optimizer formula {formula!r}; choose one of {', '.join(FORMULAS)}.")
    return formula


def make_optimizer(config, formula="pytorch"):
    """The optimizer config.optimizer names, at config.learning_rate, in the given formula."""
    return FORMULAS[check_formula(formula)][config.optimizer](config.learning_rate)


# ---------------------------------------------------------------------------------------------
# The optimizer's state under interchange names (common/checkpoint.py), for exact resume

SLOTS = {SGD: {}, Adagrad: {"sum": "s"}, Adam: {"m": "m", "v": "v"}}  # interchange slot -> attribute


def slots_of(optimizer):
    return next(slots for kind, slots in SLOTS.items() if isinstance(optimizer, kind))


def optimizer_state(optimizer, params):
    """dict "optim.<slot>/<name>" -> np.ndarray (zeros before the first step), and "optim.step" for Adam."""
    tensors = {}
    for slot, attr in slots_of(optimizer).items():
        for name, p in params.items():
            tensors[f"optim.{slot}/{name}"] = getattr(optimizer, attr).get(name, np.zeros_like(p)).copy()
    if isinstance(optimizer, Adam):
        tensors["optim.step"] = np.array(optimizer.t, dtype=np.int64)
    return tensors


def set_optimizer_state(optimizer, tensors, params):
    """The inverse of optimizer_state (tensors already checked against the config)."""
    for slot, attr in slots_of(optimizer).items():
        setattr(optimizer, attr, {name: np.array(tensors[f"optim.{slot}/{name}"], dtype=p.dtype, order="C")
                                  for name, p in params.items()})
    if isinstance(optimizer, Adam):
        optimizer.t = int(tensors["optim.step"])
