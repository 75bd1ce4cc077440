"""Matrix-multiply FLOPs per character of one training step, and the share of the machine's peak.

Counted as dense matrix products (one multiply and one add = 2 FLOPs), the way the model is
written in docs/DESIGN.md, with the input as a one-hot vector of size V:

    forward, layer l:  2 * (in_l * 4H + H * 4H)      in_0 = V, in_l = H for l > 0
    forward, head:     2 * H * V
    backward:          2 x forward (one product for the input gradient, one for the weight gradient)
    per character:     3 x forward

Element-wise work (gates, softmax, optimizer) is left out. An implementation that computes the
one-hot product as a row gather (all three do) does fewer FLOPs than counted on layer 0, so the
figure is an upper bound of useful work: the same yardstick for every implementation.

Memory a training step must hold, in bytes (config.dtype's itemsize each number), the same way:

    per layer:         (7T + 2) * B * H   the gates i, f, g, o (4H), c, tanh(c) and h (3H) of every
                                          step, kept for backward, and the initial h and c
    head:              2 * T * B * V      the logits and their softmax, alive at once in the loss
    parameters:        P * (2 + slots)    the P weights, their gradients and the optimizer's state
                                          (slots: adam 2 (m, v), adagrad 1, sgd 0)

Workspace (matmul temporaries, the backward's own arrays), the framework and the data are left
out: a lower bound of what any implementation keeps, not a model of one framework.
"""

FORMULA = ("flops_per_char = 3 * (sum over layers of 2*(in_l*4H + H*4H) + 2*H*V), "
           "in_0 = V (one-hot input counted as a dense product), in_l = H above; "
           "backward counted as 2x forward; element-wise work left out")


def forward_flops_per_char(vocab_size, hidden_size, num_layers):
    """Dense matmul FLOPs of the forward pass for one character."""
    V, H = vocab_size, hidden_size
    flops = 0
    for l in range(num_layers):
        in_l = V if l == 0 else H
        flops += 2 * (in_l * 4 * H + H * 4 * H)
    return flops + 2 * H * V


def flops_per_char(vocab_size, hidden_size, num_layers):
    """Forward + backward dense matmul FLOPs for one character (backward = 2x forward)."""
    return 3 * forward_flops_per_char(vocab_size, hidden_size, num_layers)


def gemm_flops(n):
    """FLOPs of one (n, n) @ (n, n) product."""
    return 2 * n ** 3


def peak_fraction(chars_per_s, flops_per_char_, peak_flops_per_s):
    """The share of the measured matrix-multiply peak that a throughput reaches (0..1)."""
    if not peak_flops_per_s or peak_flops_per_s <= 0:
        return float("nan")
    return chars_per_s * flops_per_char_ / peak_flops_per_s


# The memory bound is framework-free and shared with the command line's memory check (common/memory.py)
from common.memory import (MEMORY_FORMULA, OPTIMIZER_SLOTS, activation_bytes,  # noqa: E402,F401
                           activation_cache_bytes, parameter_state_bytes)
