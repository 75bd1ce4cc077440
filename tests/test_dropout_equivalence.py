"""Dropout and the learning-rate schedule in every framework and path (issue 18): with
equivalence.REGULARIZED (dropout 0.3 on every layer's output, warm-up then cosine decay), masks
and rates passed as common/training.py passes them, each path equals numpy's cell and fast paths
to the float64 tolerances (logits 1e-10, gradients 1e-9 under step 0's masks, ten steps 1e-9)."""

import os

import numpy as np
import pytest
from equivalence import (REGULARIZED, check_regularized, config, forward_float64, numpy_reference, run_regularized,
                         training_float64)

from common.frameworks import KERAS_BACKENDS, PATHS, paths_on

OPTIMIZERS = ("sgd", "adam")


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_numpy_fast_equals_the_lesson_with_dropout_and_schedule(optimizer):
    regularized = config("float64", optimizer, **REGULARIZED)
    cell = numpy_reference(regularized, "pytorch", path="cell")
    fast = numpy_reference(regularized, "pytorch", path="fast")
    forward_float64(fast, cell)
    training_float64(fast, cell, optimizer)
    # the masks and the rates are used: without them the gradients and the steps differ
    plain = numpy_reference(config("float64", optimizer), "pytorch", path="cell")
    assert np.max(np.abs(plain["grad/head.W"] - cell["grad/head.W"])) > 1e-3
    assert np.max(np.abs(plain["train_loss"][1:] - cell["train_loss"][1:])) > 1e-3
    assert np.array_equal(plain["logits"], cell["logits"])  # forward: no dropout outside training


def test_numpy_masks_gradient_against_finite_differences():
    """The hand-written backward through the dropout, checked numerically (float64)."""
    from impl_probe import probe_inputs

    from common.dropout import dropout_masks
    from common.frameworks import model_class
    from common.weights import init_weights

    c = config("float64", "sgd", dropout=0.4)
    x, y, state, _ = probe_inputs(c)
    masks = dropout_masks(c, 3)
    model = model_class("numpy", "cell")(c, init_weights(c), path="cell")
    grads = model.gradients(x, y, state=state, masks=masks)
    rng = np.random.default_rng(1)
    for name in ("lstm.1.W_x", "lstm.0.W_h", "head.W"):
        p = model.params[name]
        for _ in range(3):
            i = tuple(rng.integers(0, n) for n in p.shape)
            old = p[i]
            p[i] = old + 1e-6
            up = model.loss(x, y, state, masks)[0]
            p[i] = old - 1e-6
            down = model.loss(x, y, state, masks)[0]
            p[i] = old
            assert abs((up - down) / 2e-6 - grads[name][i]) < 1e-7, name


@pytest.fixture(scope="module")
def torch_runs(tmp_path_factory):
    return run_regularized(tmp_path_factory.mktemp("torch-regularized"), "torch", formula="pytorch",
                           optimizers=OPTIMIZERS)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("path", PATHS["torch"])
def test_torch_with_dropout_and_schedule_matches_numpy(torch_runs, path, optimizer):
    check_regularized(torch_runs, path, optimizer)


@pytest.fixture(scope="module", params=KERAS_BACKENDS)
def keras_runs(request, tmp_path_factory):
    backend = request.param
    return backend, run_regularized(tmp_path_factory.mktemp(f"keras-regularized-{backend}"), "keras", formula="keras",
                                    paths=paths_on("keras", backend), env={**os.environ, "KERAS_BACKEND": backend},
                                    optimizers=OPTIMIZERS)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_keras_with_dropout_and_schedule_matches_numpy(keras_runs, optimizer):
    backend, runs = keras_runs
    for path in paths_on("keras", backend):
        check_regularized(runs, path, optimizer)
