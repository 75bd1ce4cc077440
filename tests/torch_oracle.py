"""An oracle for the interchange layout: plain torch.nn.LSTM + nn.Linear built from docs/DESIGN.md's
table alone, with none of torch_impl's code, run on the probe batch and state.

    python tests/torch_oracle.py --config '{"dtype": "float64"}' --out oracle.npz

Saves logits (B, T, V) and state_h{l}/state_c{l}. tests/test_torch.py compares them with
torch_impl (every path) and numpy_impl (both paths): if torch_impl's mapping and the table disagree, or
numpy_impl's gate order does, one of the comparisons fails.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.config import Config  # noqa: E402
from common.weights import init_weights  # noqa: E402
from impl_probe import probe_inputs  # noqa: E402


def oracle(config, data_seed=0):
    V, H, L = config.vocab_size, config.hidden_size, config.num_layers
    dtype = getattr(torch, config.dtype)
    w = {name: torch.from_numpy(np.array(a)) for name, a in init_weights(config).items()}
    lstm = torch.nn.LSTM(V, H, num_layers=L, batch_first=True, dtype=dtype)
    head = torch.nn.Linear(H, V, dtype=dtype)
    params = dict(lstm.named_parameters())
    with torch.no_grad():
        for l in range(L):  # the table: weight_ih = W_x.T, weight_hh = W_h.T, b into bias_ih, 0 into bias_hh
            params[f"weight_ih_l{l}"].copy_(w[f"lstm.{l}.W_x"].T)
            params[f"weight_hh_l{l}"].copy_(w[f"lstm.{l}.W_h"].T)
            params[f"bias_ih_l{l}"].copy_(w[f"lstm.{l}.b"])
            params[f"bias_hh_l{l}"].zero_()
        head.weight.copy_(w["head.W"].T)
        head.bias.copy_(w["head.b"])
        x, _, state, _ = probe_inputs(config, data_seed)
        onehot = torch.nn.functional.one_hot(torch.from_numpy(x), V).to(dtype)
        h0 = torch.from_numpy(np.stack([h for h, _ in state]))
        c0 = torch.from_numpy(np.stack([c for _, c in state]))
        hs, (h, c) = lstm(onehot, (h0, c0))
        out = {"logits": head(hs).numpy()}
    for l in range(L):
        out[f"state_h{l}"], out[f"state_c{l}"] = h[l].numpy(), c[l].numpy()
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="{}", help="Config fields as JSON")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the random batch and state")
    p.add_argument("--out", required=True, help=".npz file to write")
    a = p.parse_args()
    np.savez(a.out, **oracle(Config(**json.loads(a.config)), a.data_seed))
