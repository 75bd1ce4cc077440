"""The docs name only what exists: every file, function, class, method and README section that a
docstring or comment of the project's Python files, README.md or docs/*.md names is in the tree.

What counts as a reference, and how each is checked against the AST-defined names of the repo and
its file tree (find_wrong_references):
  files       a path or file name ending in .py, .md, .html, .png, .toml or .txt (`numpy_impl/fast.py`,
              `plumbing.py`, `DESIGN.md`): it exists relative to the citing file's folder or the
              repository root; a bare file name may also stand in a package folder (each
              framework's `model.py`).
  sections    README, "Title" / README: Title: a heading of README.md or a bold run-in title
              (**Title.**) starts the cited text.
  qualified   a dotted name whose head is a module of the repo (`common.frameworks.make_model`,
              `numpy_impl.optim`) or a class of the repo (`CharLSTM.run`), and "X's name" with X
              such a module, a package or a file path (`numpy_impl's lstm_backward`): each part
              is defined where the one before it says (a package: its modules and its
              __init__.py; a module or file: its names at any level; a class: its methods and
              attributes, in any class of that name).
  in scope    in a Python file, a name that the repo defines only at module level in other
              modules (`lstm_forward`) must be defined in this file or in a module it imports.
  backticks   in Markdown, a `name` or `name()` that looks like code (an underscore, inner
              capitals, or a call) is a name some Python file of the repo uses in code.
The library names the docs discuss (torch.nn.LSTM, keras.layers.LSTM, np.*) are not the repo's,
so a dotted name whose head is not the repo's own is not checked, and LIBRARY lists the few bare
library names written in backticks that no code of the repo spells out.
"""

import ast
import builtins
import io
import re
import tokenize
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP = {".git", ".venv", "venv", "__pycache__", "build", "dist", ".pytest_cache"}
PACKAGES = ("common", "numpy_impl", "torch_impl", "keras_impl", "benchmarks", "tests")
EXTENSIONS = ("py", "md", "html", "png", "toml", "txt")
# Names of other people's code that the docs put in backticks and no Python file of the repo
# spells: CS231n's step backward, PyTorch's ExportDB case and state_dict, onnxruntime's session methods, Keras' internals
# that docs/keras-state.md reads in Keras' source.
LIBRARY = {"lstm_step_backward", "optional_input", "state_dict", "get_inputs", "get_overridable_initializers",
           "StatelessScope", "_fallback_lstm"}
# Paths in other people's trees (a library's source file the comment cites) and placeholders
FOREIGN_PATHS = ("keras/", "torch/", "tensorflow/", "jax/", "numpy/", "path/to/", "DIR/", "OUT/", "out/")
# A bare name of one of these kinds is a file the user makes in the examples (m.png, input.txt), not the repo's
USER_FILES = ("png", "txt")
# Files a make target writes (make bench-grid), named before a run has made them
OUTPUTS = {"GRID.md", "results/GRID.md"}
# This file: its docstring and its toy tree show wrong references on purpose
SELF = Path(__file__).resolve().relative_to(ROOT).as_posix()

PATH = re.compile(r"(?<![\w/.$<>~*{}\-])((?:[\w-]+/)*[\w-]+\.(?:" + "|".join(EXTENSIONS) + r"))(?![\w/-])")
DOTTED = re.compile(r"(?<![\w.])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)")
POSSESSIVE = re.compile(r"(?<![\w.])([\w./]+)'s\s+`?([A-Za-z_]\w*)(\(\))?")
WORD = re.compile(r"(?<![\w.'`-])([A-Za-z_]\w*)(?![\w])")
BACKTICKED = re.compile(r"`([A-Za-z_]\w*)(\(\))?`")
SECTION = re.compile(r"README(?:\.md)?(?:'s)?[,:]\s+(?:\"([^\"]+)\"|([A-Z][^.;)\n\"]*))")


def codelike(name, call=False):
    """A name written as code (lstm_forward, CharLSTM, LSTMCell, f()), not an English word."""
    return call or "_" in name.strip("_") or bool(re.search(r"[a-z][A-Z]|[A-Z]{2}[a-z]", name))


class Repo:
    """The names the repository defines: per module, per class, where each top-level name lives."""

    def __init__(self, root=ROOT):
        self.root = root
        self.files = {p.relative_to(root).as_posix() for p in root.rglob("*")
                      if p.is_file() and not SKIP & set(p.relative_to(root).parts)}
        self.modules = {}  # dotted name -> relative path
        for rel in sorted(self.files):
            if rel.endswith(".py"):
                parts = rel[:-3].split("/")
                self.modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = rel
        self.defined = {}  # path -> every name defined in it, at any level
        self.top = {}  # path -> its module-level names (defs, classes, assignments, imports)
        self.imports = defaultdict(set)  # path -> repo modules it imports
        self.members = defaultdict(set)  # class name -> methods and attributes (self.x, class-level)
        self.owners = defaultdict(set)  # module-level def or class name -> paths that define it
        self.used = set()  # every name Python code of the repo uses or defines
        for name, rel in self.modules.items():
            self.read_module(name, rel)
        # names one module of the code (not the tests) defines at module level, and no class as a member:
        # such a name means that module's definition wherever it is written
        self.single = {name for name, paths in self.owners.items()
                       if len(paths) == 1 and not next(iter(paths)).startswith("tests/")
                       and not any(name in m for m in self.members.values())}

    def read_module(self, module, rel):
        text = (self.root / rel).read_text(encoding="utf-8")
        tree = ast.parse(text)
        defined, top = set(), set()
        for node in tree.body:
            top |= bound_names(node)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.owners[node.name].add(rel)
        for node in ast.walk(tree):
            defined |= bound_names(node)
            if isinstance(node, ast.arg):
                defined.add(node.arg)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
                self.used.add(node.value)  # a name written as a string: a keyword, a column, a variable
            if isinstance(node, ast.ClassDef):
                for item in ast.walk(node):
                    self.members[node.name] |= bound_names(item) if item in node.body else set()
                    if isinstance(item, ast.Attribute) and isinstance(item.value, ast.Name) and item.value.id == "self":
                        self.members[node.name].add(item.attr)
            if isinstance(node, ast.Name):
                self.used.add(node.id)
            elif isinstance(node, ast.Attribute):
                self.used.add(node.attr)
            elif isinstance(node, (ast.ImportFrom, ast.Import)):
                self.imports[rel] |= self.imported_modules(module, rel, node)
            elif isinstance(node, ast.keyword) and node.arg:
                self.used.add(node.arg)
        self.defined[rel], self.top[rel] = defined, top
        self.used |= defined

    def imported_modules(self, module, rel, node):
        if isinstance(node, ast.Import):
            return {self.modules[a.name] for a in node.names if a.name in self.modules}
        package = module if rel.endswith("__init__.py") else module.rpartition(".")[0]
        base = node.module or ""
        if node.level:
            base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
        found = {self.modules[base]} if base in self.modules else set()
        return found | {self.modules[f"{base}.{a.name}"] for a in node.names if f"{base}.{a.name}" in self.modules}

    def scope(self, rel):
        """The names a Python file can mean unqualified: its own and those of the repo modules it imports."""
        names = set(self.defined.get(rel, ()))
        for other in self.imports.get(rel, ()):
            names |= self.top[other]
        return names

    def owner(self, text, citing):
        """What `text` (a dotted module name, a package or a path) names: ("package", dotted),
        ("module", path), ("class", name) or None."""
        path = self.resolve_path(text, citing) if "/" in text or text.endswith(".py") else None
        if path:
            return ("module", path) if path.endswith(".py") else None
        if text in self.modules:
            rel = self.modules[text]
            return ("package", text) if rel.endswith("__init__.py") else ("module", rel)
        if (self.root / text).is_dir() and text in PACKAGES:
            return ("package", text)
        if text in self.members:
            return ("class", text)
        return None

    def has(self, owner, name):
        kind, what = owner
        if kind == "package":
            init = self.modules.get(what)
            return f"{what}.{name}" in self.modules or (init is not None and name in self.top[init])
        if kind == "module":
            return name in self.defined[what]
        return name in self.members[what]

    def resolve_path(self, path, citing, listing=None):
        """The repo path `path` names from the file `citing` (listing: the folder a layout line
        lists), or None."""
        folder = str(Path(citing).parent)
        candidates = [f"{folder}/{path}" if folder != "." else path, path]
        if listing:
            candidates.append(f"{listing}/{path}")
        if "/" not in path:
            candidates += [f"{folder}/{path}" for folder in (*PACKAGES, "results")]
        for candidate in candidates:
            candidate = str(Path(candidate))
            if candidate in self.files or (self.root / candidate).is_dir():
                return candidate
        return None


def bound_names(node):
    """The names a statement binds: a def, a class, assignment targets, imports (as named)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in node.names}
    return set()


def python_texts(rel, text):
    """(line, text) of every docstring and comment of a Python file."""
    out = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = node.body[0] if node.body else None
            if isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str):
                out += [(doc.lineno + k, line) for k, line in enumerate(doc.value.value.splitlines())]
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.COMMENT:
            out.append((tok.start[0], tok.string))
    return sorted(out)


def sources(root=ROOT):
    """(relative path, kind, [(line, text)]) of every file whose prose is checked."""
    repo_files = sorted(p for p in root.rglob("*.py") if not SKIP & set(p.relative_to(root).parts))
    for path in repo_files:
        rel = path.relative_to(root).as_posix()
        if rel == SELF:
            continue
        yield rel, "python", python_texts(rel, path.read_text(encoding="utf-8"))
    for path in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        if path.exists():
            lines = path.read_text(encoding="utf-8").splitlines()
            yield path.relative_to(root).as_posix(), "markdown", list(enumerate(lines, start=1))


def readme_titles(root=ROOT):
    titles = set()
    for line in (root / "README.md").read_text(encoding="utf-8").splitlines():
        found = re.match(r"#+\s+(.*)", line) or re.match(r"\*\*(.+?)\.?\*\*", line)
        if found:
            title = found.group(1).strip()
            titles |= {title.lower(), title.split(":")[0].strip().lower()}
    return titles


def find_wrong_references(root=ROOT):
    """[(file, line, reference, why)] for every name in the docs that the tree does not have."""
    repo, titles, wrong = Repo(root), readme_titles(root), []
    builtin = set(dir(builtins))
    for rel, kind, lines in sources(root):
        scope = repo.scope(rel) if kind == "python" else None
        for no, text in lines:
            def report(ref, why):
                wrong.append((rel, no, ref, why))

            listing = re.match(r"([\w-]+)/\s", text) if kind == "markdown" else None  # README's Layout lines
            for path in PATH.findall(text):
                if "/" not in path and path.endswith(USER_FILES) or path in OUTPUTS:
                    continue
                if not path.startswith(FOREIGN_PATHS) and not repo.resolve_path(path, rel, listing and listing.group(1)):
                    report(path, "no such file")
            for quoted, bare in SECTION.findall(text):
                cited = (quoted or bare).strip().lower()
                if not (cited in titles if quoted else any(cited == t or cited.startswith(t + " ") for t in titles)):
                    report(f"README: {quoted or bare.strip()}", "no such README section")
            qualified = set()
            for owner_text, name, call in POSSESSIVE.findall(text):
                owner = repo.owner(owner_text.rstrip("."), rel)
                if owner and codelike(name, call):
                    qualified.add(name)
                    if not repo.has(owner, name):
                        report(f"{owner_text}'s {name}", f"{owner[1]} defines no {name}")
            for dotted in DOTTED.findall(text):
                parts = dotted.split(".")
                if dotted.endswith(tuple(f".{e}" for e in EXTENSIONS)):
                    continue
                for k in range(len(parts) - 1, 0, -1):  # the longest head that is the repo's
                    owner = repo.owner(".".join(parts[:k]), rel)
                    if owner and (owner[0] != "class" or k == 1):
                        break
                else:
                    continue
                qualified |= set(parts)
                for name in parts[k:]:
                    if not repo.has(owner, name):
                        report(dotted, f"{owner[1]} defines no {name}")
                        break
                    owner = ("class", name) if name in repo.members else None
                    if owner is None:
                        break
            if kind == "python":
                for name in WORD.findall(text):
                    home = next(iter(repo.owners[name])) if name in repo.single else None
                    if (codelike(name) and home and name not in scope and name not in qualified
                            and home not in text and home[:-3].replace("/", ".") not in text):  # "X in path.py": fine
                        report(name, f"defined only in {home}, which {rel} does not import")
            else:
                for name, call in BACKTICKED.findall(text):
                    if codelike(name, call) and name not in repo.used and name not in builtin and name not in LIBRARY:
                        report(f"`{name}{call}`", "no Python file of the repo has this name")
    return sorted(set(wrong))


def test_every_name_in_the_docs_exists():
    wrong = find_wrong_references()
    assert not wrong, "references to what does not exist:\n" + "\n".join(
        f"  {rel}:{no}: {ref} ({why})" for rel, no, ref, why in wrong)


# The checker itself, on a small tree written here: each kind of wrong reference is caught, and
# the same references written correctly pass.
TREE = {
    "README.md": "# Toy\n\n## The lesson\n\n**Speed on a busy machine.** text\n",
    "pkg/__init__.py": '"""The package."""\n',
    "pkg/model.py": '"""The lesson (README, "The lesson"); pkg/fast.py is the tuned one."""\n'
                    "from pkg import optim\n\n\nclass CharLSTM:\n    def run(self):\n        self.state = 0\n",
    "pkg/fast.py": '"""Tuned."""\n\n\ndef lstm_forward():\n    pass\n',
    "pkg/optim.py": '"""Optimizers."""\n\nFORMULAS = {}\n',
}


@pytest.fixture
def toy(tmp_path):
    for rel, text in TREE.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


def add(root, rel, text):
    path = root / rel
    path.write_text(path.read_text() + text if path.exists() else text)


def wrong_in(root):
    return {(rel, ref) for rel, _, ref, _ in find_wrong_references(root)}


def test_the_toy_tree_is_clean(toy):
    add(toy, "pkg/optim.py", "# see pkg/model.py's CharLSTM, CharLSTM.run, CharLSTM.state, model.py, pkg.optim.FORMULAS\n")
    add(toy, "README.md", "`CharLSTM.run()` and `lstm_forward` (README, Speed on a busy machine); `np.zeros`\n")
    assert wrong_in(toy) == set()


@pytest.mark.parametrize("rel, line, ref", [
    ("pkg/optim.py", "# the design (DESIGN.md)\n", "DESIGN.md"),
    ("pkg/optim.py", "# what pkg/missing.py does\n", "pkg/missing.py"),
    ("pkg/optim.py", "# autograd is the whole of pkg's lstm_forward\n", "pkg's lstm_forward"),
    ("pkg/optim.py", "# numpy: lstm_forward\n", "lstm_forward"),
    ("pkg/optim.py", "# CharLSTM.forward runs it\n", "CharLSTM.forward"),
    ("pkg/optim.py", "# pkg.optim.SCHEDULES\n", "pkg.optim.SCHEDULES"),
    ("pkg/optim.py", '# (README, "Keras: what the cell path tried")\n', "README: Keras: what the cell path tried"),
    ("pkg/optim.py", "# (README: Memory)\n", "README: Memory"),
    ("README.md", "the cell's `build()`\n", "`build()`"),
])
def test_each_kind_of_wrong_reference_is_caught(toy, rel, line, ref):
    add(toy, rel, line)
    assert wrong_in(toy) == {(rel, ref)}
