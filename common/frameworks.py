"""The registry of implementations: the command line and the benchmark reach each framework only
through its module name and the CharLSTM interface of docs/DESIGN.md, never by importing it here.

Each (framework, path) lives in one module: the lesson paths in `<framework>_impl/model.py`, the
tuned path "fast" in `<framework>_impl/fast.py`; INTERFACES names the class make_model builds
(for torch and keras, the plumbing's Interface around the lesson's nn.Module or keras.Model).
"""

import contextlib
import importlib
import os
import sys
import warnings

from common.errors import ConfigError

FRAMEWORKS = {"numpy": "numpy_impl.model", "torch": "torch_impl.model", "keras": "keras_impl.model"}
PATHS = {"numpy": ("cell", "fast"), "torch": ("layer", "cell"), "keras": ("layer", "cell", "fast")}
DEFAULT_PATH = {"numpy": "cell", "torch": "layer", "keras": "layer"}
FAST_MODULES = {"numpy": "numpy_impl.fast", "keras": "keras_impl.fast"}
# (framework, path) -> "module:class" of what make_model builds: the class with the numpy interface
# (numpy in and out, interchange weights). torch's lesson CharLSTM is an nn.Module and Keras' a
# keras.Model; each framework's plumbing Interface holds one.
INTERFACES = {("numpy", "cell"): "numpy_impl.model:CharLSTM", ("numpy", "fast"): "numpy_impl.fast:CharLSTM",
              ("torch", "layer"): "torch_impl.plumbing:Interface", ("torch", "cell"): "torch_impl.plumbing:Interface",
              ("keras", "layer"): "keras_impl.plumbing:Interface", ("keras", "cell"): "keras_impl.plumbing:Interface",
              ("keras", "fast"): "keras_impl.fast:CharLSTM"}
PACKAGES = {"numpy": "numpy", "torch": "torch", "keras": "keras and its backend (tensorflow-cpu, jax or torch)"}
# Keras 3 runs on any of these; KERAS_BACKEND (the command line's --backend) picks one before import
KERAS_BACKENDS = ("tensorflow", "jax", "torch")
BACKEND_PACKAGES = {"tensorflow": "tensorflow-cpu", "jax": "jax and jaxlib", "torch": "torch"}
DEFAULT_KERAS_BACKEND = "tensorflow"
# Paths that run on some Keras backends only: the TensorFlow-tuned cell of keras_impl/fast.py
BACKEND_ONLY = {("keras", "fast"): ("tensorflow",)}
# Environment variables every framework's thread pools read at import (BLAS, OpenMP, TensorFlow)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
# Set to anything but 0 (or --verbose): the frameworks' start-up notes and warnings are shown
VERBOSE = "ROSETTA_VERBOSE"


def check_framework(framework, path=None):
    """(framework, path) after checking both names; path None means the framework's default."""
    if framework not in FRAMEWORKS:
        raise ConfigError(f"unknown framework {framework!r}; choose one of {', '.join(FRAMEWORKS)}.")
    path = DEFAULT_PATH[framework] if path is None else path
    if path not in PATHS[framework]:
        raise ConfigError(f"{framework} has no path {path!r}; choose one of {', '.join(PATHS[framework])}.")
    return framework, path


def check_backend(backend):
    """A Keras 3 backend name, checked; None means KERAS_BACKEND or the default (tensorflow)."""
    backend = backend or os.environ.get("KERAS_BACKEND") or DEFAULT_KERAS_BACKEND
    if backend not in KERAS_BACKENDS:
        raise ConfigError(f"unknown Keras backend {backend!r}; choose one of {', '.join(KERAS_BACKENDS)}.")
    return backend


def check_device(framework, device):
    """The device for `framework`, checked: torch takes any name torch knows (cpu, cuda, cuda:1; its
    model says in one sentence when that device is missing); the others run where they do."""
    device = device or "cpu"
    if device != "cpu" and framework == "numpy":
        raise ConfigError(f"numpy runs on the CPU only; leave out --device {device} (it applies to torch).")
    if device != "cpu" and framework == "keras":
        raise ConfigError(f"Keras places its work where its backend does (TensorFlow and JAX use a GPU their build "
                          f"sees, by themselves); leave out --device {device}, which applies to torch only.")
    return device


def paths_on(framework, backend=None):
    """The paths `framework` has on Keras backend `backend` (None: KERAS_BACKEND or the default);
    for numpy and torch, all of PATHS."""
    backend = check_backend(backend) if framework == "keras" else None
    return tuple(p for p in PATHS[framework] if backend in BACKEND_ONLY.get((framework, p), (backend,)))


def use_backend(backend):
    """Set KERAS_BACKEND before keras is imported (Keras 3 reads it once, at import)."""
    os.environ["KERAS_BACKEND"] = check_backend(backend)
    return os.environ["KERAS_BACKEND"]


def verbose(environ=os.environ):
    """Whether the user asked to see what the frameworks print: ROSETTA_VERBOSE, or TensorFlow's
    own TF_CPP_MIN_LOG_LEVEL=0."""
    return environ.get(VERBOSE, "0") not in ("", "0") or environ.get("TF_CPP_MIN_LOG_LEVEL") == "0"


@contextlib.contextmanager
def quiet():
    """Silence what a framework prints while it loads or exports, unless verbose(): Python warnings,
    and everything written to file descriptor 2 (TensorFlow 2.21 writes its absl and oneDNN start-up
    lines there before it reads TF_CPP_MIN_LOG_LEVEL; torch.onnx logs its registry notes there)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's later notes; a value the user set is kept
    try:
        saved = None if verbose() else os.dup(2)
    except OSError:  # no standard error to silence
        saved = None
    if saved is None:
        yield
        return
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def module_name(framework, path=None):
    """The module that holds `framework`'s CharLSTM for `path`."""
    framework, path = check_framework(framework, path)
    return FAST_MODULES[framework] if path == "fast" else FRAMEWORKS[framework]


def model_class(framework, path=None):
    """The class make_model builds for a framework and path (INTERFACES), imported on demand by module name."""
    framework, path = check_framework(framework, path)
    name, attribute = INTERFACES[(framework, path)].split(":")
    try:
        with quiet():  # the framework's start-up lines would bury the first line of ours
            module = importlib.import_module(name)
    except ImportError as e:
        what = PACKAGES[framework]
        if framework == "keras":
            backend = check_backend(None)
            what = f"keras and {BACKEND_PACKAGES[backend]} (the {backend} backend)"
        raise ConfigError(
            f"the {framework} implementation cannot be imported ({e}); "
            f"install {what} with `make .venv` or pip install -r requirements.txt.") from None
    return getattr(module, attribute)


def make_model(framework, config, weights, path=None, **options):
    """The model of `framework` on `path` with the numpy interface, loaded with interchange `weights`;
    options go to its class (torch's device=, keras' jit_compile=)."""
    framework, path = check_framework(framework, path)
    return model_class(framework, path)(config, weights, path=path, **options)
