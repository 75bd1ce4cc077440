"""What keras_impl/model.py's CharLSTM needs beyond the lesson, kept here so that model.py reads
like its numpy and torch twins: the backend chosen before keras is imported, Keras' float64
workarounds (floatx, keep_float64, check_dtype), the wrapper that carries the LSTM state between
train_on_batch calls (CarriedState), numpy arrays put in the order the models take them
(model_inputs, train_inputs, mask_inputs), and the training state that exact resume saves
(common/checkpoint.py). model.py imports this module before keras, and calls the training state
functions from one-line methods of the same names. Keras only: no backend is imported here."""

import contextlib
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# float64 on JAX needs JAX's 64-bit mode, which JAX reads once, when it is imported (by keras,
# just below); without it a float64 model would silently compute in float32. It changes nothing
# on the other backends, and a float32 model keeps its float32 arrays.
os.environ.setdefault("JAX_ENABLE_X64", "true")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from common.checkpoint import check_training_state  # noqa: E402
from common.errors import ConfigError  # noqa: E402


@contextlib.contextmanager
def floatx(dtype):
    """Keras' default float type set to `dtype` for what is made inside, then restored.

    The learning rate, the loss and the loss tracker that train_on_batch reports through are made
    in floatx unless told otherwise: in a float64 model they must be float64 too. Keras' data
    adapters also cast float inputs to floatx, and keras.ops take python floats in it: each Keras
    call runs inside floatx(config.dtype), or a float64 state would reach the model rounded to float32.
    """
    before = keras.config.floatx()
    keras.config.set_floatx(dtype)
    try:
        yield
    finally:
        keras.config.set_floatx(before)


def keep_float64(dtype):
    """Let keras.ops compute float64 in float64 on JAX and torch, for a float64 model (dtype).

    Keras 3.15's type promotion (keras/src/backend/common/dtypes.py, BIT64_TO_BIT32_DTYPE) turns
    every float64 result type into float32 on all backends but TensorFlow, "to align with JAX's
    default": ops.matmul on torch, ops.tanh and ops.mean on JAX, the loss's mean, the optimizer's
    arithmetic then round a float64 model to float32 (keras-team/keras issues 23223 and 23704).
    With JAX's 64-bit mode on (above) float64 is JAX's own behaviour too; this drops that one entry
    of the table, for float64 models only (a float32 model never reaches it).
    """
    from keras.src.backend.common import dtypes

    if dtype == "float64":
        dtypes.BIT64_TO_BIT32_DTYPE.pop("float64", None)


def check_dtype(variable, dtype):
    """A ConfigError when the backend made `variable` in another dtype than the model's."""
    if keras.backend.standardize_dtype(variable.dtype) != dtype:
        raise ConfigError(f"the {keras.backend.backend()} backend cannot hold {dtype} here; "
                          "set JAX_ENABLE_X64=true before jax is imported.")


class CarriedState(keras.Model):
    """`net` with its LSTM state kept in non-trainable variables: train_on_batch(x, y) starts from
    the state the previous call left, and leaves the new one (truncated BPTT).

    Why not keras.layers.LSTM(stateful=True) (docs/keras-state.md): keras.layers.RNN makes its
    state variables untracked, so they are not among the model's non_trainable_variables; the JAX
    trainer runs the step as a pure function of exactly those lists and drops every other
    assignment, so on JAX the state never moves. On torch, the layer's assign is an in-place copy
    into the tensor that autograd saved for the backward pass. Here the state variables are
    tracked (add_weight), so the JAX trainer returns their new values, and call() reads them
    through a copy, so that torch's autograd never holds the tensor that assign overwrites.
    """

    def __init__(self, net, batch_size, hidden_size, num_layers, **kwargs):
        super().__init__(**kwargs)
        self.net = net
        self.carried = [self.add_weight(shape=(batch_size, hidden_size), initializer="zeros",
                                        trainable=False, name=f"{name}{l}")
                        for l in range(num_layers) for name in ("h", "c")]  # h0, c0, h1, c1, ...

    def call(self, x):
        x, *masks = x if isinstance(x, (list, tuple)) else [x]  # [ids, *dropout masks] with dropout
        logits, *new_state = self.net([x, *(ops.copy(s.value) for s in self.carried), *masks])
        for s, new in zip(self.carried, new_state):
            s.assign(ops.stop_gradient(new))
        return logits

    def reset_state(self):
        for s in self.carried:
            s.assign(ops.zeros(s.shape, s.dtype))

    @property
    def state(self):
        """The carried state, [(h, c)] per layer, numpy."""
        s = [ops.convert_to_numpy(v) for v in self.carried]  # h0, c0, h1, c1, ...
        return list(zip(s[0::2], s[1::2]))


def model_inputs(model, x, state=None, masks=None):
    """The inputs of model.net and model.scorer: x int32 (B, T), then h0, c0, h1, c1, ... in
    config.dtype (zeros for state None), then with dropout the masks (ones where none are given:
    no dropout outside training)."""
    x = np.asarray(x, dtype=np.int32)
    if state is None:
        state = model.zero_state(x.shape[0])
    return [x, *(np.asarray(s, dtype=model.dtype) for hc in state for s in hc), *mask_inputs(model, x, masks)]


def train_inputs(model, x, masks=None):
    """The input of model.trainer (CarriedState, which holds the state): x int32 (B, T), or with
    dropout [x, *masks]."""
    x = np.asarray(x, dtype=np.int32)
    return [x, *mask_inputs(model, x, masks)] if model.config.dropout else x


def mask_inputs(model, x, masks):
    if not model.config.dropout:
        return []
    if masks is None:
        return [np.ones(x.shape + (model.config.hidden_size,), model.dtype)] * model.config.num_layers
    return [np.asarray(m, dtype=model.dtype) for m in masks]


# the interchange slot name -> the Keras optimizer's list of slot variables
SLOTS = {"sgd": {}, "adagrad": {"sum": "_accumulators"}, "adam": {"m": "_momentums", "v": "_velocities"}}


def get_training_state(model):
    """What exact resume needs beyond the weights: dict name -> np.ndarray, the optimizer's state
    ("optim.m/lstm.0.W_x", "optim.v/...", "optim.sum/..." for Adagrad, "optim.step") and the
    carried state ("state.h/0", "state.c/0", ...), interchange layout."""
    slots, optimizer = SLOTS[model.config.optimizer], model.optimizer
    if not optimizer.built:  # built at the first step: before it, zeros
        optimizer.build(model.trainer.trainable_variables)
    tensors = {}
    for name, p in model.params.items():
        for slot, key in slots.items():  # each slot variable sits at its weight's index
            tensors[f"optim.{slot}/{name}"] = np.array(ops.convert_to_numpy(
                getattr(optimizer, key)[optimizer._get_variable_index(p)]))
    if model.config.optimizer == "adam":
        tensors["optim.step"] = np.array(int(ops.convert_to_numpy(optimizer.iterations)), np.int64)
    for l, (h, c) in enumerate(model.state):
        tensors[f"state.h/{l}"], tensors[f"state.c/{l}"] = np.array(h), np.array(c)
    return tensors


def set_training_state(model, tensors):
    """The inverse of get_training_state; a missing, extra or misshaped tensor is a CheckpointError."""
    check_training_state(tensors, model.config)
    slots, optimizer = SLOTS[model.config.optimizer], model.optimizer
    if not optimizer.built:
        optimizer.build(model.trainer.trainable_variables)
    for name, p in model.params.items():
        for slot, key in slots.items():
            getattr(optimizer, key)[optimizer._get_variable_index(p)].assign(
                np.asarray(tensors[f"optim.{slot}/{name}"], dtype=model.dtype))
    if model.config.optimizer == "adam":
        optimizer.iterations.assign(int(tensors["optim.step"]))
    values = (tensors[f"state.{hc}/{l}"] for l in range(model.config.num_layers) for hc in "hc")
    for s, value in zip(model.trainer.carried, values):
        s.assign(np.asarray(value, dtype=model.dtype))
