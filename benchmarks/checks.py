"""Self-checks of one benchmark row before its figures are published: its final weights (the
worker's checkpoint) re-scored by numpy's forward on the same validation batches, and its sample
tested against what those weights write.

    check = self_check(result, weights_path, val_batches, num_val, last_step)
    check["check"]   # "ok", or "broken: <reasons>" (run.py then keeps the row out of the findings)

numpy only (numpy_impl is the reference forward); run.py calls it between workers.
"""

import math

import numpy as np

from benchmarks.worker import validation_loss

# A row's own final validation loss against numpy's on the same weights and batches. Both sum
# float32 products of up to H + V terms (relative rounding about sqrt(H) x 6e-8, 1e-6 at H=256) over
# 8 x 64 carried steps and average cross-entropies of order 2: their difference is 1e-6 to 1e-5 in
# practice (the equivalence tests: 1e-5 in float32). 1e-4 leaves a 10x margin over that, and stays
# a thousand times below what a real fault moves (a wrong weight or state: 0.1 nats and more).
VAL_TOLERANCE = 1e-4
# The sample's surprise z (below): under "drawn from these weights" it is about N(0, 1), so -6 is
# a false alarm about once in a billion rows; a sample from other weights or a dropped state
# scores far below (-20 and less for a few hundred characters).
SAMPLE_Z = -6.0


def sample_surprise(model, vocab, text, prime, temperature):
    """(mean nats per generated character at temperature 1, z) of `text` (prime + generated) under
    `model`'s forward from a zero state, as common.sampling draws it. z = sum_t (log q_t(x_t) + H_t)
    / sqrt(sum_t Var_t) with q_t the distribution the character was drawn from (softmax(logits / T)),
    H_t its entropy and Var_t the variance of log q_t under q_t: each term has mean 0 and that
    variance when x_t is drawn from q_t, so z is about N(0, 1) for the model's own text and falls
    far below 0 for text the model would not write."""
    ids = np.asarray(vocab.encode(text, what="the sample"), dtype=np.int64)
    P = len(prime)
    if len(ids) <= P:
        return None, None
    logits, _ = model.forward(ids[None, :-1], None)  # position t predicts ids[t + 1]
    z = np.asarray(logits, dtype=np.float64)[0, P - 1:]  # the positions that drew a character
    x = ids[P:]
    def log_softmax(v):
        v = v - v.max(axis=-1, keepdims=True)
        return v - np.log(np.exp(v).sum(axis=-1, keepdims=True))
    nll = -np.take_along_axis(log_softmax(z), x[:, None], axis=-1)[:, 0]
    log_q = log_softmax(z / temperature)
    q = np.exp(log_q)
    entropy = -(q * log_q).sum(axis=-1)
    var = (q * log_q ** 2).sum(axis=-1) - entropy ** 2
    drawn = np.take_along_axis(log_q, x[:, None], axis=-1)[:, 0]
    spread = math.sqrt(max(float(var.sum()), 1e-12))
    return float(nll.mean()), float((drawn + entropy).sum() / spread)


def self_check(result, weights_path, val_batches, num_val, last_step):
    """{"numpy_val_loss", "sample_nll", "sample_z", "check"} of a finished worker result. Broken:
    no final validation at last_step, a final validation more than VAL_TOLERANCE from numpy's on
    the saved weights, no saved weights, or a sample (when one was asked for) below SAMPLE_Z."""
    from common.checkpoint import load_checkpoint
    from common.errors import RosettaError
    from common.frameworks import make_model

    out, reasons = {"numpy_val_loss": None, "sample_nll": None, "sample_z": None}, []
    vals = result.get("val") or []
    final = vals[-1]["val_loss"] if vals and vals[-1]["step"] == last_step else None
    if final is None:
        reasons.append(f"no validation at the final step {last_step}")
    try:
        ckpt = load_checkpoint(weights_path)
    except (RosettaError, OSError) as e:
        reasons.append(f"its final weights cannot be read ({e})")
        out["check"] = "broken: " + "; ".join(reasons)
        return out
    model = make_model("numpy", ckpt.config, ckpt.weights, path="cell")
    if num_val:
        out["numpy_val_loss"] = numpy_val = validation_loss(model, val_batches, num_val)
        if final is not None and not abs(final - numpy_val) <= VAL_TOLERANCE:
            reasons.append(f"its final validation loss {final:.6f} is not numpy's {numpy_val:.6f} on its "
                           f"final weights (tolerance {VAL_TOLERANCE:g})")
    text = result.get("sample")
    if result.get("sample_length"):
        try:
            nll, z = sample_surprise(model, ckpt.vocab, text or "", result.get("sample_prime") or "",
                                     result.get("sample_temperature") or 1.0)
        except RosettaError:
            nll, z = None, None
            reasons.append(f"its sample is not text of its vocabulary: {(text or '')[:60]!r}")
        else:
            out["sample_nll"], out["sample_z"] = nll, z
            if z is None:
                reasons.append("it wrote no sample")
            elif z < SAMPLE_Z:
                reasons.append(f"its sample is not text its final weights write (surprise z = {z:.1f}, "
                               f"below {SAMPLE_Z:g}; {nll:.2f} nats per character)")
    out["check"] = "broken: " + "; ".join(reasons) if reasons else "ok"
    return out
