"""common.frameworks: the registry of implementations, paths and Keras backends (imports no framework)."""

import pytest

from common.errors import ConfigError
from common.frameworks import PATHS, check_framework, module_name, paths_on


def test_fast_is_keras_on_tensorflow_only():
    assert paths_on("keras", "tensorflow") == ("layer", "cell", "fast")
    assert paths_on("keras", "jax") == paths_on("keras", "torch") == ("layer", "cell")
    assert paths_on("numpy") == PATHS["numpy"] and paths_on("torch", "jax") == PATHS["torch"]


def test_paths_on_reads_keras_backend_when_none_is_given(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert "fast" not in paths_on("keras")
    monkeypatch.delenv("KERAS_BACKEND")
    assert "fast" in paths_on("keras")  # the default backend, tensorflow


def test_unknown_names_are_one_sentence():
    with pytest.raises(ConfigError, match=r"^unknown Keras backend 'theano'; choose one of tensorflow, jax, torch\.$"):
        paths_on("keras", "theano")
    with pytest.raises(ConfigError, match=r"^torch has no path 'fast'; choose one of layer, cell\.$"):
        check_framework("torch", "fast")


def test_fast_paths_live_in_fast_py():
    assert module_name("numpy", "fast") == "numpy_impl.fast" and module_name("keras", "fast") == "keras_impl.fast"
    assert module_name("keras") == "keras_impl.model"
