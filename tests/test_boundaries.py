"""The package boundaries of docs/DESIGN.md: common imports no framework, numpy_impl no torch,
TensorFlow, Keras or JAX, torch_impl none of TensorFlow, Keras or JAX, and keras_impl/model.py only
keras: a backend appears only inside its gradients section (the one job Keras 3 leaves to it), and
the TensorFlow-tuned path lives in keras_impl/fast.py.

Checked twice per package: statically (the import statements of every file, read with ast) and
dynamically (every module imported in a fresh process, then sys.modules inspected). A package
with no modules yet is skipped; a module that exists and crosses its boundary fails the test.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN = {
    "common": {"torch", "tensorflow", "keras", "jax", "torch_impl", "keras_impl", "numpy_impl"},
    "numpy_impl": {"torch", "tensorflow", "keras", "jax", "torch_impl", "keras_impl"},
    "torch_impl": {"tensorflow", "keras", "jax", "keras_impl", "numpy_impl"},
    "keras_impl": {"torch_impl", "numpy_impl"},
}
BACKENDS = {"tensorflow", "jax", "torch"}


def modules_of(package_dir):
    """Dotted names of the package and of every .py module under it."""
    package_dir = Path(package_dir)
    names = []
    for f in sorted(package_dir.rglob("*.py")):
        parts = f.relative_to(package_dir.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def static_imports(path):
    """(line, top-level module) of every import in a file, including importlib/__import__ of a literal."""
    found = []
    for node in ast.walk(ast.parse(Path(path).read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__")):
            found.append((node.lineno, node.args[0].value.split(".")[0]))
    return found


def static_violations(package_dir, forbidden):
    return [f"{f.relative_to(package_dir.parent)}:{line} imports {name}"
            for f in sorted(Path(package_dir).rglob("*.py"))
            for line, name in static_imports(f) if name in forbidden]


PROBE = """
import importlib, json, sys
sys.path.insert(0, sys.argv[1])
for name in json.loads(sys.argv[2]):
    importlib.import_module(name)
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def loaded_top_level_modules(root, modules):
    """Top-level names in sys.modules of a fresh process after importing `modules` from `root`."""
    proc = subprocess.run([sys.executable, "-c", PROBE, str(root), json.dumps(modules)],
                          capture_output=True, text=True, timeout=300, cwd=root)
    assert proc.returncode == 0, f"importing {modules} failed:\n{proc.stderr[-3000:]}"
    return set(json.loads(proc.stdout.splitlines()[-1]))


def package_or_skip(package):
    package_dir = ROOT / package
    modules = modules_of(package_dir) if package_dir.is_dir() else []
    if not [m for m in modules if m != package]:
        pytest.skip(f"{package} has no modules yet")
    return package_dir, modules


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_static_imports(package):
    package_dir, _ = package_or_skip(package)
    assert static_violations(package_dir, FORBIDDEN[package]) == []


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_importing_every_module_loads_no_forbidden_framework(package):
    _, modules = package_or_skip(package)
    loaded = loaded_top_level_modules(ROOT, modules)
    assert loaded & FORBIDDEN[package] == set(), f"importing {package} loaded {sorted(loaded & FORBIDDEN[package])}"


# ---------------------------------------------------------------------------------------------
# The checks themselves can fail: a throw-away package that crosses a boundary is caught.

def test_checks_catch_a_crossing(tmp_path):
    pkg = tmp_path / "leaky"
    pkg.mkdir()
    (pkg / "__init__.py").write_text('"""A package."""\n')
    (pkg / "clean.py").write_text("import json\n")
    (pkg / "direct.py").write_text("import os\nfrom fractions import Fraction\n")
    (pkg / "hidden.py").write_text("def f():\n    import importlib\n    return importlib.import_module('decimal')\n")
    (pkg / "via.py").write_text("from leaky import direct\n")  # crosses only through another module
    assert modules_of(pkg) == ["leaky", "leaky.clean", "leaky.direct", "leaky.hidden", "leaky.via"]
    assert static_violations(pkg, {"fractions", "decimal"}) == [
        "leaky/direct.py:2 imports fractions", "leaky/hidden.py:3 imports decimal"]
    assert "fractions" in loaded_top_level_modules(tmp_path, ["leaky.via"])
    assert "fractions" not in loaded_top_level_modules(tmp_path, ["leaky.clean"])


def test_common_is_checked():
    """common exists from the start, so its checks must run, not be skipped."""
    assert "common.config" in modules_of(ROOT / "common")
    assert {"torch", "tensorflow", "keras"} <= FORBIDDEN["common"]


# ---------------------------------------------------------------------------------------------
# keras_impl/model.py: Keras only, a backend only where Keras 3 leaves a job to it

def keras_model_imports():
    """(line, module, inside a function) of every import in keras_impl/model.py."""
    tree = ast.parse((ROOT / "keras_impl" / "model.py").read_text())
    in_function = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                   for n in ast.walk(f)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name.split(".")[0], id(node) in in_function) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0], id(node) in in_function))
    return found


def test_keras_model_imports_a_backend_only_inside_its_gradients_section():
    from common.rosetta import MARKER
    lines = (ROOT / "keras_impl" / "model.py").read_text().splitlines()
    markers = {l.strip()[len(MARKER):]: i + 1 for i, l in enumerate(lines) if l.strip().startswith(MARKER)}
    start, end = markers["gradients"], markers.get("train step", len(lines) + 1)
    backend = [(line, name, inner) for line, name, inner in keras_model_imports() if name in BACKENDS]
    assert [b for b in backend if not b[2]] == [], "keras_impl/model.py imports a backend at module level"
    assert [b for b in backend if not start < b[0] < end] == [], \
        f"a backend import outside the gradients section (lines {start}-{end})"


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_importing_keras_model_loads_no_other_backend(backend, monkeypatch):
    """keras itself imports jax when it is installed; tensorflow and torch only load when chosen."""
    monkeypatch.setenv("KERAS_BACKEND", backend)
    loaded = loaded_top_level_modules(ROOT, ["keras_impl.model"])
    assert backend in loaded
    assert loaded & (BACKENDS - {backend, "jax"}) == set(), sorted(loaded & BACKENDS)


# ---------------------------------------------------------------------------------------------
# rosetta import (issue 26): the ONNX reader lives in common/ and reads with onnx and numpy only

def test_the_onnx_reader_imports_only_onnx_numpy_and_common():
    names = {name for _, name in static_imports(ROOT / "common" / "onnx_import.py")}
    assert names <= {"numpy", "onnx", "common"}, sorted(names)
    assert loaded_top_level_modules(ROOT, ["common.onnx_import"]) & (BACKENDS | {"keras"}) == set()
