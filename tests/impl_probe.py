"""Run one implementation through the docs/DESIGN.md interface only and save what it computed.

Cross-framework tests call this in a fresh process (TensorFlow and PyTorch are never imported
into the pytest process), then compare the arrays with numpy_impl computed in the test itself:

    python tests/impl_probe.py --framework torch --path cell --config '{"dtype": "float64"}' \
        --out probe.npz --train-steps 10

Saved arrays: logits (B, T, V) and state_h{l}/state_c{l} from forward with a random initial
state; loss (evaluate) and grad/<name> (gradients) on the same batch and state; train_loss (steps,)
from train_step over consecutive batches with the state carried; weights/<name> after training.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.batches import make_batches, training_steps  # noqa: E402
from common.config import Config  # noqa: E402
from common.dropout import dropout_masks  # noqa: E402
from common.frameworks import make_model  # noqa: E402
from common.training import step_options  # noqa: E402
from common.weights import init_weights  # noqa: E402


def probe_inputs(config, data_seed=0, train_steps=0):
    """The batch, initial state and training text every probe (and the test) uses."""
    rng = np.random.default_rng(data_seed)
    B, T, V, H = config.batch_size, config.seq_length, config.vocab_size, config.hidden_size
    x = rng.integers(0, V, size=(B, T))
    y = rng.integers(0, V, size=(B, T))
    if config.target == "last":
        y = y[:, -1:]  # (B, 1): the character after each window
    state = [(rng.uniform(-0.5, 0.5, (B, H)).astype(config.dtype),
              rng.uniform(-0.5, 0.5, (B, H)).astype(config.dtype)) for _ in range(config.num_layers)]
    # a text with a pattern, so that training moves the loss: "abcab..." with some noise
    n = B * T * max(train_steps, 1) + 1
    text = (np.arange(n) % V + (rng.random(n) < 0.1) * rng.integers(0, V, n)) % V
    return x, y, state, make_batches(text, config)  # Batches, or Windows for target "last"


def run_probe(framework, path, config, data_seed=0, train_steps=0):
    x, y, state, batches = probe_inputs(config, data_seed, train_steps)
    model = make_model(framework, config, init_weights(config), path=path)
    out = {}
    logits, new_state = model.forward(x, state=state)
    out["logits"] = np.asarray(logits)
    for l, (h, c) in enumerate(new_state):
        out[f"state_h{l}"], out[f"state_c{l}"] = np.asarray(h), np.asarray(c)
    out["loss"] = np.array(model.evaluate(x, y, state=state))
    masks = dropout_masks(config, 0)  # with config.dropout: step 0's masks (common/dropout.py)
    for name, g in model.gradients(x, y, state=state, **({"masks": masks} if masks else {})).items():
        out[f"grad/{name}"] = np.asarray(g)
    losses = []
    for step, xb, yb, new_epoch in training_steps(batches, train_steps):
        if new_epoch or not batches.carries_state:
            model.reset_state()
        losses.append(model.train_step(xb, yb, **step_options(config, step, train_steps)))  # masks, lr: as the loop
    out["train_loss"] = np.array(losses, dtype=np.float64)
    for name, w in model.get_weights().items():
        out[f"weights/{name}"] = np.asarray(w)
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--framework", required=True, help="numpy, torch or keras")
    p.add_argument("--path", default=None, help="layer, cell or fast, as common.frameworks.PATHS has them (default: the framework's default)")
    p.add_argument("--config", default="{}", help="Config fields as JSON")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the random batch and state")
    p.add_argument("--train-steps", type=int, default=0, help="train_step calls to record")
    p.add_argument("--out", required=True, help=".npz file to write")
    a = p.parse_args()
    result = run_probe(a.framework, a.path, Config(**json.loads(a.config)), a.data_seed, a.train_steps)
    np.savez(a.out, **result)
