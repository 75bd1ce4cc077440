"""An oracle for the interchange layout: a plain keras.layers.LSTM stack + Dense built from
docs/DESIGN.md's table alone, with none of keras_impl's code, run on the probe batch and state.

    python tests/keras_oracle.py --config '{"dtype": "float64"}' --out oracle.npz

Saves logits (B, T, V) and state_h{l}/state_c{l}. tests/test_keras.py compares them with
keras_impl (both paths) and numpy_impl: if keras_impl's mapping and the table disagree, or
numpy_impl's gate order does, one of the comparisons fails.
"""

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("JAX_ENABLE_X64", "true")  # float64 on JAX
import keras  # noqa: E402
from keras.src.backend.common import dtypes  # noqa: E402

# keras' type promotion turns float64 into float32 on every backend but TensorFlow (keras-team/keras
# issues 23223, 23704): without this the oracle would compute a float64 model in float32 there
dtypes.BIT64_TO_BIT32_DTYPE.pop("float64", None)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.config import Config  # noqa: E402
from common.weights import init_weights  # noqa: E402
from impl_probe import probe_inputs  # noqa: E402


def oracle(config, data_seed=0):
    V, H, L, dtype = config.vocab_size, config.hidden_size, config.num_layers, config.dtype
    w = init_weights(config)
    onehot = keras.Input((None, V), dtype=dtype)
    states = [(keras.Input((H,), dtype=dtype), keras.Input((H,), dtype=dtype)) for _ in range(L)]
    seq, outputs, lstms = onehot, [], []
    for l in range(L):
        lstms.append(keras.layers.LSTM(H, return_sequences=True, return_state=True, dtype=dtype))
        seq, h, c = lstms[-1](seq, initial_state=list(states[l]))
        outputs += [h, c]
    head = keras.layers.Dense(V, dtype=dtype)
    model = keras.Model([onehot, *(s for hc in states for s in hc)], [head(seq), *outputs])
    for l, lstm in enumerate(lstms):  # the table: kernel = W_x, recurrent_kernel = W_h, bias = b
        lstm.set_weights([w[f"lstm.{l}.W_x"], w[f"lstm.{l}.W_h"], w[f"lstm.{l}.b"]])
    head.set_weights([w["head.W"], w["head.b"]])  # dense kernel = head.W, bias = head.b

    x, _, state, _ = probe_inputs(config, data_seed)
    results = model([np.eye(V, dtype=dtype)[x], *(s for hc in state for s in hc)])
    out = {"logits": keras.ops.convert_to_numpy(results[0])}
    for l in range(L):
        out[f"state_h{l}"], out[f"state_c{l}"] = (keras.ops.convert_to_numpy(results[1 + 2 * l]),
                                              keras.ops.convert_to_numpy(results[2 + 2 * l]))
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="{}", help="Config fields as JSON")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the random batch and state")
    p.add_argument("--out", required=True, help=".npz file to write")
    a = p.parse_args()
    np.savez(a.out, **oracle(Config(**json.loads(a.config)), a.data_seed))
