"""Initial weights in the interchange layout, made with numpy from a seed.

All three implementations load these, so they start from the same point. The initializers are
Keras' defaults for an LSTM and a Dense head:

    lstm.{l}.W_x  (in_l, 4H)  Glorot uniform        in_0 = V, in_l = H for l > 0
    lstm.{l}.W_h  (H, 4H)     orthogonal
    lstm.{l}.b    (4H,)       zeros, forget-gate slice [H:2H] = 1 (Keras' unit_forget_bias)
    head.W        (H, V)      Glorot uniform
    head.b        (V,)        zeros

Gates are stacked along the last axis in the order i, f, g, o (Keras and PyTorch both use it).
"""

import numpy as np


def weight_shapes(config):
    """dict name -> shape of every tensor in the interchange layout, in a fixed order."""
    V, H = config.vocab_size, config.hidden_size
    shapes = {}
    for l in range(config.num_layers):
        in_l = V if l == 0 else H
        shapes[f"lstm.{l}.W_x"] = (in_l, 4 * H)
        shapes[f"lstm.{l}.W_h"] = (H, 4 * H)
        shapes[f"lstm.{l}.b"] = (4 * H,)
    shapes["head.W"] = (H, V)
    shapes["head.b"] = (V,)
    return shapes


def glorot_uniform(rng, shape):
    """U(-a, a) with a = sqrt(6 / (fan_in + fan_out)), fans of the whole (in, out) matrix."""
    fan_in, fan_out = shape
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape)


def orthogonal(rng, shape):
    """Keras' Orthogonal: QR of a Gaussian matrix, signs fixed by diag(R); (H, 4H) has orthonormal rows."""
    rows, cols = shape
    a = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))
    return q.T if rows < cols else q


def init_weights(config):
    """dict name -> np.ndarray of config.dtype, reproducible from config.seed."""
    rng = np.random.default_rng(config.seed)
    H = config.hidden_size
    weights = {}
    for name, shape in weight_shapes(config).items():
        if name.endswith("W_x") or name == "head.W":
            w = glorot_uniform(rng, shape)
        elif name.endswith("W_h"):
            w = orthogonal(rng, shape)
        else:
            w = np.zeros(shape)
            if name.startswith("lstm."):
                w[H:2 * H] = 1.0  # forget gate starts open: remember by default
        weights[name] = w.astype(config.dtype)
    return weights


def check_weights(weights, config, source="the weights"):
    """Refuse, naming the tensor, weights that do not fit `config`: missing, extra or misshapen."""
    from common.errors import CheckpointError

    expected = weight_shapes(config)
    missing = [name for name in expected if name not in weights]
    if missing:
        raise CheckpointError(
            f"{source} lack tensor {missing[0]!r} (shape {expected[missing[0]]})"
            f"{f' and {len(missing) - 1} more' if len(missing) > 1 else ''}; "
            f"use a checkpoint written for this config ({config.num_layers} layer(s) of {config.hidden_size} units).")
    extra = sorted(set(weights) - set(expected))
    if extra:
        raise CheckpointError(
            f"{source} hold tensor {extra[0]!r}, which a model of {config.num_layers} layer(s) has no place for; "
            f"use a checkpoint written for this config.")
    for name, shape in expected.items():
        got = tuple(np.shape(weights[name]))
        if got != shape:
            raise CheckpointError(
                f"tensor {name!r} in {source} has shape {got}, but this config (V={config.vocab_size}, "
                f"H={config.hidden_size}) needs {shape}; use a checkpoint with the same vocabulary and sizes.")
