"""The registry of implementations: the command line and the benchmark reach each framework only
through its module name and the CharLSTM interface of DESIGN.md, never by importing it here."""

import importlib

from common.errors import ConfigError

FRAMEWORKS = {"numpy": "numpy_impl.model", "torch": "torch_impl.model", "keras": "keras_impl.model"}
PATHS = {"numpy": ("cell",), "torch": ("layer", "cell"), "keras": ("layer", "cell")}
DEFAULT_PATH = {"numpy": "cell", "torch": "layer", "keras": "layer"}
PACKAGES = {"numpy": "numpy", "torch": "torch", "keras": "tensorflow-cpu and keras"}
# Environment variables every framework's thread pools read at import (BLAS, OpenMP, TensorFlow)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


def check_framework(framework, path=None):
    """(framework, path) after checking both names; path None means the framework's default."""
    if framework not in FRAMEWORKS:
        raise ConfigError(f"unknown framework {framework!r}; choose one of {', '.join(FRAMEWORKS)}.")
    path = DEFAULT_PATH[framework] if path is None else path
    if path not in PATHS[framework]:
        raise ConfigError(f"{framework} has no path {path!r}; choose one of {', '.join(PATHS[framework])}.")
    return framework, path


def model_class(framework):
    """The CharLSTM class of a framework, imported on demand by module name."""
    check_framework(framework)
    try:
        module = importlib.import_module(FRAMEWORKS[framework])
    except ImportError as e:
        raise ConfigError(
            f"the {framework} implementation cannot be imported ({e}); "
            f"install {PACKAGES[framework]} with `make .venv` or pip install -r requirements.txt.") from None
    return module.CharLSTM


def make_model(framework, config, weights, path=None):
    """A CharLSTM of `framework` on `path`, loaded with interchange `weights`."""
    framework, path = check_framework(framework, path)
    return model_class(framework)(config, weights, path=path)
