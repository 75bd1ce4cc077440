"""What keras_impl/model.py's CharLSTM (a keras.Model) needs beyond the lesson, kept here so that
model.py reads like its numpy and torch twins: the backend chosen before keras is imported, Keras'
float64 workarounds (floatx, keep_float64, check_dtype), the layer that carries the LSTM state
between train_on_batch calls (CarriedState), and Interface: the model behind the interface the
shared loop, the benchmark and the tests use (numpy in and out, interchange names, the path check,
the training state that exact resume saves, common/checkpoint.py; get_training_state and
set_training_state, which keras_impl/fast.py shares). model.py imports this module before keras.
Keras only: no backend is imported here."""

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
from common.weights import check_weights  # noqa: E402


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


class CarriedState(keras.layers.Layer):
    """The LSTM state carried from one train_on_batch to the next (truncated BPTT), h, c (B, H) per
    layer in non-trainable variables of the model: CharLSTM.call reads it and writes the new one.

    Why not keras.layers.LSTM(stateful=True) (docs/keras-state.md): keras.layers.RNN makes its
    state variables untracked, so they are not among the model's non_trainable_variables; the JAX
    trainer runs the step as a pure function of exactly those lists and drops every other
    assignment, so on JAX the state never moves. On torch, the layer's assign is an in-place copy
    into the tensor that autograd saved for the backward pass. Here the state variables are
    tracked (add_weight), so the JAX trainer returns their new values, and read() gives a copy,
    so that torch's autograd never holds the tensor that write() overwrites.
    """

    def __init__(self, config):
        super().__init__(dtype=config.dtype)
        self.hc = [self.add_weight(shape=(config.batch_size, config.hidden_size), initializer="zeros",
                                   trainable=False, name=f"{name}{l}")
                   for l in range(config.num_layers) for name in ("h", "c")]  # h0, c0, h1, c1, ...
        self.built = True  # its weights are made above; it is read and written, never called

    def read(self):
        """[(h, c)] per layer, copies of the variables' values."""
        s = [ops.copy(v.value) for v in self.hc]
        return list(zip(s[0::2], s[1::2]))

    def write(self, new_state):
        """new_state [(h, c)] per layer, tensors or numpy, into the variables; no gradient flows back."""
        for v, new in zip(self.hc, (s for hc in new_state for s in hc)):
            v.assign(ops.stop_gradient(ops.convert_to_tensor(new, v.dtype)))

    def reset(self):
        for v in self.hc:
            v.assign(ops.zeros(v.shape, v.dtype))

    def numpy(self):
        """[(h, c)] per layer, numpy."""
        s = [ops.convert_to_numpy(v) for v in self.hc]
        return list(zip(s[0::2], s[1::2]))


class Interface:
    """keras_impl.model.CharLSTM behind the interface the shared loop, the benchmark and the tests
    use (numpy_impl.model.CharLSTM's methods): numpy in and out, the weights under interchange names,
    the carried state, the dtype kept, the training state for exact resume. self.model is the keras.Model.

        model = Interface(config, init_weights(config))     # path "layer" or "cell"
        loss = model.train_step(x, y)                        # x, y: int (B, T)
        logits, state = model.forward(x)                     # np (B, T, V), [(h, c)] per layer
    """

    def __init__(self, config, weights, path="layer", jit_compile="auto"):
        from .model import PATHS, CharLSTM

        if path not in PATHS:
            raise ConfigError(f"keras has no path {path!r}; choose one of {', '.join(PATHS)}.")
        check_weights(weights, config)
        self.config, self.path, self.dtype = config, path, config.dtype
        keep_float64(self.dtype)  # float64 computed in float64 on every backend
        with floatx(self.dtype):
            self.model = CharLSTM(config, path, jit_compile)  # compiled: its optimizer and loss tracker in dtype
            self.model(self.inputs(np.zeros((1, 1))))  # a first call makes every layer's weights
        # params: interchange name -> keras variable, updated in place by the optimizer
        self.params = {}
        for l, lstm in enumerate(self.model.lstms):
            cell = lstm.cell  # keras.layers.LSTM's cell stores W as (in, 4H) too (README, the checkpoint table)
            W_x, W_h, b = (cell.kernel, cell.recurrent_kernel, cell.bias) if path == "layer" else (cell.W_x, cell.W_h, cell.b)
            self.params.update({f"lstm.{l}.W_x": W_x, f"lstm.{l}.W_h": W_h, f"lstm.{l}.b": b})
        self.params["head.W"], self.params["head.b"] = self.model.head.kernel, self.model.head.bias
        assert list(self.params.values()) == self.model.trainable_variables  # the order gradients() returns
        for name, p in self.params.items():
            p.assign(np.asarray(weights[name], dtype=self.dtype))
        self.optimizer = self.model.optimizer  # keras.optimizers: SGD, Adagrad, Adam
        check_dtype(self.params["head.b"], self.dtype)

    def get_weights(self):
        """The weights in the interchange layout: dict name -> np.ndarray (copies), config.dtype."""
        return {name: np.array(ops.convert_to_numpy(p)) for name, p in self.params.items()}

    def reset_state(self):
        """Zero the state carried from one train_step to the next (a new epoch)."""
        self.model.reset_state()

    @property
    def state(self):
        """The carried state, [(h, c)] per layer, numpy."""
        return self.model.carried.numpy()

    def zero_state(self, B):
        H = self.config.hidden_size
        return [(np.zeros((B, H), self.dtype), np.zeros((B, H), self.dtype)) for _ in range(self.config.num_layers)]

    def inputs(self, x, state=None, masks=None):
        """CharLSTM.call's inputs from numpy: x int32 (B, T), the state in config.dtype (zeros for
        None), the dropout masks in config.dtype (None: none)."""
        x = np.asarray(x, dtype=np.int32)
        state = self.zero_state(x.shape[0]) if state is None else state
        return {"x": x, "state": [(np.asarray(h, self.dtype), np.asarray(c, self.dtype)) for h, c in state],
                "masks": self.masks(masks)}

    def masks(self, masks):
        return None if masks is None else [np.asarray(m, self.dtype) for m in masks]

    def forward(self, x, state=None):
        """Logits np (B, T, V) in config.dtype and the new state [(h, c)] per layer; no update."""
        with floatx(self.dtype):  # float64 inputs stay float64 (see floatx)
            logits, new_state = self.model.predict_on_batch(self.inputs(x, state))
        return logits, [(h, c) for h, c in new_state]

    def loss(self, x, y, state, masks=None):
        """Mean cross-entropy over the scored positions (CharLSTM.compute_loss), a backend tensor."""
        with floatx(self.dtype):
            return self.model.compute_loss(y=np.asarray(y, dtype=np.int32), y_pred=self.model(self.inputs(x, state, masks)))

    def evaluate(self, x, y, state=None):
        """Mean cross-entropy over the scored positions (CharLSTM.compute_loss), a python float; no update."""
        with floatx(self.dtype):
            return float(self.model.test_on_batch(self.inputs(x, state), np.asarray(y, dtype=np.int32)))

    def gradients(self, x, y, state=None, masks=None):
        """dict interchange name -> np.ndarray of d loss / d weight; no update. masks: as train_step's."""
        with floatx(self.dtype):
            inputs = self.inputs(x, state, masks)
            grads = self.model.gradients(inputs["x"], np.asarray(y, dtype=np.int32), inputs["state"], inputs["masks"])
        return {name: np.array(ops.convert_to_numpy(g)) for name, g in zip(self.params, grads)}

    def train_step(self, x, y, masks=None, learning_rate=None):
        """One optimizer update from the carried state (clipped by global norm when clip_norm > 0,
        by value when clip_value > 0); returns the loss before it and carries the new state
        (truncated BPTT); with target "last" every call starts from zeros. masks: the step's
        dropout masks, learning_rate: the step's rate (common/dropout.py, common/schedule.py)."""
        if learning_rate is not None:
            self.optimizer.learning_rate = learning_rate  # assigned to the variable the step reads
        with floatx(self.dtype):
            return float(self.model.train_batch(np.asarray(x, dtype=np.int32), np.asarray(y, dtype=np.int32),
                                                self.masks(masks)))

    def get_training_state(self):
        """What exact resume needs beyond the weights (common/checkpoint.py): dict name -> np.ndarray."""
        return get_training_state(self)

    def set_training_state(self, tensors):
        """The inverse of get_training_state; a missing, extra or misshaped tensor is a CheckpointError."""
        self.model.carried.write(set_training_state(self, tensors))


# the interchange slot name -> the Keras optimizer's list of slot variables
SLOTS = {"sgd": {}, "adagrad": {"sum": "_accumulators"}, "adam": {"m": "_momentums", "v": "_velocities"}}


def get_training_state(model):
    """What exact resume needs beyond the weights: dict name -> np.ndarray, the optimizer's state
    ("optim.m/lstm.0.W_x", "optim.v/...", "optim.sum/..." for Adagrad, "optim.step") and the
    carried state ("state.h/0", "state.c/0", ...), interchange layout. model: an Interface, or
    keras_impl/fast.py's CharLSTM (params, optimizer, state)."""
    slots, optimizer = SLOTS[model.config.optimizer], model.optimizer
    if not optimizer.built:  # built at the first step: before it, zeros
        optimizer.build(list(model.params.values()))
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
    """The inverse of get_training_state for the optimizer; returns the carried state [(h, c)] per
    layer, numpy, for the caller to keep. A missing, extra or misshaped tensor is a CheckpointError."""
    check_training_state(tensors, model.config)
    slots, optimizer = SLOTS[model.config.optimizer], model.optimizer
    if not optimizer.built:
        optimizer.build(list(model.params.values()))
    for name, p in model.params.items():
        for slot, key in slots.items():
            getattr(optimizer, key)[optimizer._get_variable_index(p)].assign(
                np.asarray(tensors[f"optim.{slot}/{name}"], dtype=model.dtype))
    if model.config.optimizer == "adam":
        optimizer.iterations.assign(int(tensors["optim.step"]))
    state = [(np.asarray(tensors[f"state.h/{l}"], model.dtype), np.asarray(tensors[f"state.c/{l}"], model.dtype))
             for l in range(model.config.num_layers)]
    return state
