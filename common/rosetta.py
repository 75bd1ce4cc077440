"""The Rosetta view: the three model.py files line by line, one row per statement, and each
framework's model.py beside its own fast.py.

    python -m common.rosetta                 # docs/rosetta.html, and docs/rosetta.png if Chromium is here
    python -m common.rosetta --check         # exit 1 if docs/rosetta.html is older than the code

Every model.py marks its sections with one comment line each, `# --- <name>`, in the order of
SECTIONS (tests/test_rosetta.py checks it); each fast.py marks the ones it has, in the same order.
The markers every shown file has are hard anchors: each such section is aligned on its own. Inside
a section the files are aligned line by line (align_files): a weighted longest common subsequence
over normalized lines (library prefixes such as np., torch., ops. dropped, `call` read as
`forward`), two files at a time, the third aligned against the rows of the first two. A file with
no line in a row shows a labelled gap (gap_label). The page is one static file: code highlighted
by pygments into CSS classes, no script, no network; below 1200 px a CSS-only chooser shows two
frameworks at a time.
"""

import argparse
import ast
import difflib
import html
import re
import shutil
import subprocess
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORKS = ("numpy", "torch", "keras")
MARKER = "# --- "

# The named sections of every model.py, in order (one `# --- name` marker line each)
SECTIONS = ("helpers", "step", "layer over time", "model", "forward", "loss", "gradients", "train step")

# What each section holds (the section bar's one line), and what each framework does there
ROWS = {
    "preamble": ("What the file is, and what it imports", {}),
    "helpers": ("What each framework takes from its library, or writes itself", {}),
    "step": ("One time step: z = x_t @ W_x + h_prev @ W_h + b, then the gates i, f, g, o, then c and h",
             {"numpy": "forward and backward by hand, a cache between them",
              "torch": "an nn.Module: forward only, autograd records it",
              "keras": "a keras.layers.Layer: call only, the backend differentiates it"}),
    "layer over time": ("One layer over T steps",
                        {"numpy": "a loop forward, reversed(range(T)) backward",
                         "torch": "an nn.Module looping over time (nn.LSTM on path layer)",
                         "keras": "keras.layers.RNN runs the cell (keras.layers.LSTM on path layer)"}),
    "model": ("The stack of L layers and the head, loaded with the interchange weights", {}),
    "forward": ("Logits and the new state", {}),
    "loss": ("Mean cross-entropy over the scored positions", {}),
    "gradients": ("The backward pass",
                  {"numpy": "written by hand: the chain rule through every step in reverse",
                   "torch": "loss.backward(): autograd",
                   "keras": "the backend differentiates (a tape, jax.grad or torch autograd)"}),
    "train step": ("One optimizer update, the state carried to the next batch",
                   {"numpy": "clip, then numpy_impl/optim.py by hand",
                    "torch": "zero_grad, loss.backward(), clip, optimizer.step(), detach",
                    "keras": "train_on_batch: Keras differentiates, clips and steps"}),
}

# The labels of a column's gap (a row where that file has no line)
AUTOGRAD = "autograd: no code here"  # torch or keras opposite numpy's hand-written backward
TRAIN_ON_BATCH = "train_on_batch does this"  # keras opposite the others' train step
NO_LINE = "no line here"
DIFFERENTIATED = ("torch", "keras")  # the frameworks whose backward the library derives

# Alignment: spellings that say the same thing in each library, read as one
PREFIXES = re.compile(r"\b(?:np|numpy|torch|nn|F|ops|keras|layers|tf|jax|jnp)\.")
SYNONYMS = {"call": "forward", "dim": "axis", "numpy": "np"}
MATCH = 0.5  # lines less alike than this (difflib ratio of their tokens) are never put on one row
SAME_ELSEWHERE = 0.8  # nor lines of differently named functions less alike than this


def split_sections(text):
    """{name: code} of one file: 'preamble' (before the first marker), then each marked section."""
    sections, name, lines = {}, "preamble", []
    for line in text.splitlines():
        if line.strip().startswith(MARKER):
            sections[name] = "\n".join(lines).strip("\n")
            name, lines = line.strip()[len(MARKER):].strip(), []
        else:
            lines.append(line)
    sections[name] = "\n".join(lines).strip("\n")
    return sections


def section_order(text):
    """The section names of a file in the order its markers appear."""
    return [line.strip()[len(MARKER):].strip() for line in text.splitlines() if line.strip().startswith(MARKER)]


def changed_lines(a, b):
    """Lines that differ between two texts, as `diff a b | grep -c '^[<>]'` counts them (`make diff`);
    difflib's count, which can differ by a few lines, where no diff program is installed."""
    if shutil.which("diff"):
        with tempfile.TemporaryDirectory() as tmp:
            files = [Path(tmp, name) for name in ("a", "b")]
            for f, text in zip(files, (a, b)):
                f.write_text(text, encoding="utf-8")
            out = subprocess.run(["diff", *map(str, files)], capture_output=True, text=True).stdout
        return sum(1 for line in out.splitlines() if line[:1] in "<>")
    return sum(1 for d in difflib.ndiff(a.splitlines(), b.splitlines()) if d[:2] in ("- ", "+ "))


# --- reading a file into lines

class Line:
    """One source line: its number, text, pygments tokens [(css class, text)], the normalized key
    the alignment compares, and the functions it stands in (innermost last)."""

    def __init__(self, framework, no, text, tokens, functions):
        self.framework, self.no, self.text, self.tokens, self.functions = framework, no, text, tokens, functions
        self.key = normalize(tokens)
        self.defines = defined_name(self.key)


def css_class(ttype):
    from pygments.token import STANDARD_TYPES
    while ttype not in STANDARD_TYPES:
        ttype = ttype.parent
    return STANDARD_TYPES[ttype]


def lex_lines(text):
    """Per source line, the pygments tokens [(css class, text)], each cut into words, spaces and
    symbols (a multi-line string split at its newlines)."""
    from pygments.lexers import PythonLexer
    lines = [[]]
    for ttype, value in PythonLexer(stripnl=False, ensurenl=True).get_tokens(text):
        for k, part in enumerate(value.split("\n")):
            if k:
                lines.append([])
            # words, spaces and symbols apart, so that a differing word is marked, not a whole string
            lines[-1] += [(css_class(ttype), piece) for piece in re.findall(r"\w+|\s+|[^\w\s]", part)]
    return lines[:len(text.splitlines())]


def function_spans(text):
    """[(first line, last line, name)] of every def in a file (its decorators included)."""
    try:
        tree = ast.parse(text)
    except SyntaxError:  # a fragment: no function is known
        return []
    spans = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            spans.append((first, node.end_lineno, node.name))
    return sorted(spans)


def read_lines(framework, text):
    spans = function_spans(text)
    return [Line(framework, no, line, tokens, [name for a, b, name in spans if a <= no <= b])
            for no, (line, tokens) in enumerate(zip(text.splitlines(), lex_lines(text)), start=1)]


def normalize(tokens):
    """The words and symbols a line says, in one spelling: code without its comment (a comment
    line keeps its words), library prefixes dropped, synonyms (`call` for `forward`) merged."""
    code = "".join(v for c, v in tokens if not c.startswith("c"))
    text = code if code.strip() else "".join(v for _, v in tokens)
    words = re.findall(r"\w+|[^\w\s]", PREFIXES.sub("", text))
    return tuple(SYNONYMS.get(w, w) for w in words)


def defined_name(key):
    return key[1] if len(key) > 1 and key[0] in ("def", "class") else None


@lru_cache(maxsize=None)
def key_similarity(a, b):
    if a == b:
        return 2.0 if a else 0.1  # two blank lines: a weak match, so that code decides
    if not a or not b:
        return 0.0
    wa, wb = words(a), words(b)
    if wa or wb:  # the names and numbers decide: punctuation is much the same in any code
        a, b = wa, wb
    ratio = difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()
    return ratio if ratio >= MATCH else 0.0


def words(key):
    return tuple(w for w in key if w[0].isalnum() or w[0] == "_")


def similarity(a, b):
    """How well two lines stand on one row: 0 never; an equal normalized line 2; a def or class of
    the same name 3, so that functions line up before their bodies do. Lines of functions with
    different names share a row only when nearly equal; a function's `return` or `for` lines
    share one with those of its namesake."""
    if a.defines and a.defines == b.defines:
        return 3.0
    score = key_similarity(a.key, b.key)
    fa, fb = (SYNONYMS.get(x.functions[-1], x.functions[-1]) if x.functions else None for x in (a, b))
    if (fa and fb and fa != fb) or (a.defines and b.defines):  # different functions, or defs of different names
        return score if score >= SAME_ELSEWHERE else 0.0
    if fa and fa == fb and a.key[:1] == b.key[:1] and a.key[:1] in (("return",), ("for",)):
        return max(score, MATCH)
    return score


# --- aligning

def align_pair(n, m, score):
    """The weighted longest common subsequence of two sequences (score(i, j) > 0: i and j may share a
    row): [(i or None, j or None)] in order, every i and j once."""
    table = [[0.0] * (m + 1) for _ in range(n + 1)]
    scores = {}
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            s = scores[i, j] = score(i, j)
            best = max(table[i + 1][j], table[i][j + 1])
            table[i][j] = max(best, table[i + 1][j + 1] + s) if s > 0 else best
    pairs, i, j = [], 0, 0
    while i < n and j < m:
        s = scores[i, j]
        if s > 0 and table[i][j] == table[i + 1][j + 1] + s:
            pairs.append((i, j))
            i, j = i + 1, j + 1
        elif table[i][j] == table[i + 1][j]:
            pairs.append((i, None))
            i += 1
        else:
            pairs.append((None, j))
            j += 1
    return pairs + [(k, None) for k in range(i, n)] + [(None, k) for k in range(j, m)]


def align_lines(columns):
    """Rows [(Line or None per column)]: the first two columns aligned, then each next column
    against those rows (a line may share a row with any line already in it)."""
    rows = [(line,) for line in columns[0]]
    for column in columns[1:]:
        pairs = align_pair(len(rows), len(column),
                           lambda i, j: max(similarity(x, column[j]) for x in rows[i] if x is not None))
        width = len(rows[0]) if rows else len(columns) - 1
        rows = [(rows[i] if i is not None else (None,) * width) + (column[j] if j is not None else None,)
                for i, j in pairs]
    return tidy(rows)


def tidy(rows):
    """Drop a blank line that stands opposite a gap, and runs of blank rows beyond one."""
    out = []
    for row in rows:
        present = [line for line in row if line is not None]
        if all(not line.text.strip() for line in present):
            if len(present) < len(row) or not out or out[-1] is None:
                continue
            out.append(None)  # one blank row
        else:
            out.append(row)
    while out and out[-1] is None:
        out.pop()
    return [(None,) * len(rows[0]) if row is None else row for row in out] if rows else []


def anchors(files):
    """The section markers every file has, in an order all files agree on: the hard anchors."""
    orders = [section_order("\n".join(line.text for line in lines)) for lines in files]
    common = orders[0]
    for order in orders[1:]:
        matcher = difflib.SequenceMatcher(None, common, order, autojunk=False)
        common = [name for block in matcher.get_matching_blocks() for name in common[block.a:block.a + block.size]]
    return common


def split_at(lines, names):
    """[(name, marker Line or None, [Line])] of one file: the preamble, then one block per anchor
    name; a marker of a section not in names stays a line of its block."""
    blocks, current = [("preamble", None, [])], None
    for line in lines:
        name = line.text.strip()[len(MARKER):].strip() if line.text.strip().startswith(MARKER) else None
        if name in names and name not in [b[0] for b in blocks]:
            blocks.append((name, line, []))
        else:
            blocks[-1][2].append(line)
    return blocks


def align_files(files):
    """[(section name, [marker Line or None per file], rows)] for files [[Line]], aligned."""
    names = anchors(files)
    split = [dict((name, (marker, lines)) for name, marker, lines in split_at(f, names)) for f in files]
    return [(name, [s[name][0] for s in split], align_lines([s[name][1] for s in split]))
            for name in ["preamble", *names]]


def gap_label(row, framework, three_way):
    """The label of `framework`'s empty cell in row: autograd opposite numpy's backward, Keras'
    train_on_batch opposite another file's train step, a neutral label elsewhere."""
    others = [line for line in row if line is not None and line.framework != framework]
    if three_way and framework in DIFFERENTIATED and any(
            line.framework == "numpy" and "backward" in line.functions for line in others):
        return AUTOGRAD
    if three_way and framework == "keras" and any("train_step" in line.functions for line in others):
        return TRAIN_ON_BATCH
    return NO_LINE


# --- rendering

def differing_tokens(line, others):
    """The indices of line.tokens that are not in every other line of its row (whitespace never)."""
    words = [(k, v) for k, (c, v) in enumerate(line.tokens) if v.strip()]
    differ = set()
    for other in others:
        theirs = [v for c, v in other.tokens if v.strip()]
        matcher = difflib.SequenceMatcher(None, [v for _, v in words], theirs, autojunk=False)
        same = {k for block in matcher.get_matching_blocks() for k in range(block.a, block.a + block.size)}
        differ |= {words[k][0] for k in range(len(words)) if k not in same}
    return differ


def render_line(line, differ):
    runs = []  # [classes, text]: neighbouring tokens of the same classes in one span
    for k, (cls, value) in enumerate(line.tokens):
        classes = " ".join(c for c in (cls, "d" if k in differ else "") if c)
        if runs and runs[-1][0] == classes:
            runs[-1][1] += value
        else:
            runs.append([classes, value])
    return "".join(f'<span class="{c}">{html.escape(v)}</span>' if c else html.escape(v) for c, v in runs)


def render_column(rows, k, framework, three_way):
    """The lines of column k: one element per row, each one line high."""
    out, previous = [], None
    for row in rows:
        line = row[k]
        if line is None:
            label = gap_label(row, framework, three_way) if any(x is not None for x in row) else ""
            kind = "blank" if not label else "gap"
            text = label if label and label != previous else ""
            out.append(f'<div class="ln {kind}" data-label="{label}">'
                       f'<span class="no"></span>{html.escape(text)}</div>')
            previous = label or None
            continue
        previous = None
        present = [x for x in row if x is not None]
        others = [x for x in present if x is not line]
        same = len(present) > 1 and all(x.text.strip() == line.text.strip() for x in others)
        differ = set() if same or not others else differing_tokens(line, others)
        kind = "ln same" if same else "ln"
        out.append(f'<div class="{kind}" data-line="{line.no}">'
                   f'<span class="no">{line.no}</span>{render_line(line, differ)}</div>')
    return "\n".join(out)


def render_part(part, files, labels, three_way):
    """One aligned part: a header row of file names, then one block per section."""
    frameworks = [f for f, _ in labels]
    heads = "".join(f'<div class="col head {f}">{html.escape(label)}</div>' for f, label in labels)
    out = [f'<div class="part {"tri" if three_way else "pair"}" data-part="{part}">',
           f'<div class="cols heads">{heads}</div>']
    for name, markers, rows in align_files(files):
        title, notes = ROWS.get(name, ("", {}))
        where = " &middot; ".join(f"{f} line {m.no}" for f, m in zip(frameworks, markers) if m is not None)
        out.append(f'<div class="block" data-section="{html.escape(name)}">'
                   f'<div class="bar"><b>{html.escape(name)}</b>'
                   f'{" &middot; " + html.escape(title) if title else ""}'
                   f'{f" <small>({where})</small>" if where else ""}</div>')
        if three_way and notes:
            out.append('<div class="cols notes">' + "".join(
                f'<div class="col note {f}">{html.escape(notes.get(f, ""))}</div>' for f in frameworks) + "</div>")
        out.append('<div class="cols code">' + "".join(
            f'<div class="col {f}" data-framework="{f}"><div class="lines">{render_column(rows, k, f, three_way)}'
            f'</div></div>' for k, f in enumerate(frameworks)) + "</div></div>")
    out.append("</div>")
    return "\n".join(out)


def read(root, framework, filename):
    path = root / f"{framework}_impl" / filename
    return read_lines(framework, path.read_text(encoding="utf-8")) if path.exists() else None


PAIRS = [(a, b) for i, a in enumerate(FRAMEWORKS) for b in FRAMEWORKS[i + 1:]]


def chooser():
    """Radio buttons (before main, so that CSS can see them) and their labels: which two columns
    of the three-way part show below 1200 px."""
    inputs = "".join(f'<input type="radio" name="pair" id="show-{a}-{b}"{" checked" if k == 0 else ""}>'
                     for k, (a, b) in enumerate(PAIRS))
    labels = " ".join(f'<label for="show-{a}-{b}">{a} | {b}</label>' for a, b in PAIRS)
    return inputs, f'<nav class="chooser">Narrow window: show <span>{labels}</span></nav>'


def css():
    from pygments.formatters import HtmlFormatter
    hide = []
    for a, b in PAIRS:
        (hidden,) = set(FRAMEWORKS) - {a, b}
        hide.append(f"#show-{a}-{b}:checked ~ main .tri .{hidden}")
        hide.append(f'#show-{a}-{b}:checked ~ main label[for="show-{a}-{b}"]')
    hidden_rules = ", ".join(h for h in hide if "label" not in h)
    chosen_rules = ", ".join(h for h in hide if "label" in h)
    return HtmlFormatter(style="friendly").get_style_defs(".lines") + f"""
body {{ font-family: system-ui, sans-serif; margin: 1.2em; color: #222; }}
h1 {{ font-size: 1.45em; margin: 0 0 .3em; }} h2 {{ margin: 1.6em 0 .4em; }} h3 {{ margin: 1.2em 0 .3em; }}
p.lead {{ max-width: 75em; margin: .3em 0; }}
input[name=pair] {{ position: absolute; opacity: 0; pointer-events: none; }}
.chooser {{ display: none; margin: .6em 0; }}
.chooser label {{ display: inline-block; padding: .2em .7em; margin-right: .3em; border: 1px solid #4a7ab0;
                 border-radius: 4px; cursor: pointer; }}
{chosen_rules} {{ background: #4a7ab0; color: #fff; }}
@media (max-width: 1199px) {{ .chooser {{ display: block; }} {hidden_rules} {{ display: none; }} }}
.cols {{ display: flex; gap: .6em; }}
.col {{ flex: 1 1 0; min-width: 0; }}
.heads {{ position: sticky; top: 0; z-index: 2; background: #fff; border-bottom: 2px solid #888; }}
.head {{ font-weight: 600; padding: .35em 0; font-family: ui-monospace, monospace; }}
.bar {{ margin-top: 1em; padding: .3em .6em; background: #eef3f8; border-left: 4px solid #4a7ab0; }}
.bar b {{ font-family: ui-monospace, monospace; }} .bar small {{ color: #666; }}
.note {{ font-size: .85em; color: #555; font-style: italic; margin: .25em 0; }}
.code .col {{ overflow-x: auto; background: #fafafa; border: 1px solid #e4e4e4; }}
.lines {{ display: inline-block; min-width: 100%; font-family: ui-monospace, "DejaVu Sans Mono", monospace;
          font-size: 12px; line-height: 18px; background: #fcfcfc; }}
.ln {{ white-space: pre; height: auto; }}
.ln .no {{ position: sticky; left: 0; display: inline-block; width: 3.5em; padding-right: .8em;
           text-align: right; color: #999; background: #f0f0f0; user-select: none; }}
.ln.same > span:not(.no) {{ opacity: .45; }}
.ln .d {{ background: #fff1b8; border-radius: 2px; }}
.ln.gap {{ color: #8a6d3b; font-style: italic; background: repeating-linear-gradient(135deg, #fafafa 0 6px, #f1ece1 6px 8px); }}
.ln.gap[data-label="{NO_LINE}"] {{ color: #aaa; }}
.none {{ font-style: italic; color: #555; }}
"""


def render(root=ROOT):
    """The whole page as one HTML string (deterministic: the same sources give the same bytes)."""
    root = Path(root)
    lessons = {f: read(root, f, "model.py") for f in FRAMEWORKS}
    texts = {f: (root / f"{f}_impl" / "model.py").read_text(encoding="utf-8") for f in FRAMEWORKS}
    counts = ", ".join(f"{a}/{b} {changed_lines(texts[a], texts[b])}" for a, b in PAIRS)
    lesson = render_part("model.py", [lessons[f] for f in FRAMEWORKS],
                         [(f, f"{f}_impl/model.py") for f in FRAMEWORKS], three_way=True)
    fast = []
    for f in FRAMEWORKS:
        tuned = read(root, f, "fast.py")
        fast.append(f'<h3 id="fast-{f}">{f}: model.py | fast.py</h3>')
        if tuned is None:
            fast.append(f'<p class="none">{f}_impl has no fast.py: its fast path is the library\'s own layer '
                        f'(path "layer"), so there is nothing to align here.</p>')
        else:
            fast.append(render_part(f"{f}-fast", [lessons[f], tuned],
                                    [(f, f"{f}_impl/model.py"), (f, f"{f}_impl/fast.py")], three_way=False))
    inputs, nav = chooser()
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>LSTM Rosetta: numpy, PyTorch and Keras line by line</title>
<style>{css()}</style></head>
<body>
{inputs}
<main>
<h1>LSTM Rosetta: one character-level LSTM in numpy, PyTorch and Keras 3, line by line</h1>
<p class="lead">One row per statement: the same statement of the three <code>model.py</code> files stands on one
row, with each file's line numbers. The sections (<code># --- name</code> in the code) are aligned first, then
the lines inside each section. Dimmed rows are the same line in every file that has it; highlighted words differ.
A hatched cell is a file with no line there: <i>{AUTOGRAD}</i> opposite numpy's hand-written backward
(the cell's, the layer's and the model's), <i>{TRAIN_ON_BATCH}</i> where Keras' training step has no line.
Changed lines between the files, as <code>make diff</code> counts them: {counts}.
Generated by <code>make rosetta</code> from the sources.</p>
<p class="lead"><a href="#lesson">The lesson: model.py</a> &middot; <a href="#fast">What it takes to be fast:
each model.py beside its own fast.py</a></p>
{nav}
<h2 id="lesson">The lesson: model.py</h2>
{lesson}
<h2 id="fast">What it takes to be fast: each framework's model.py beside its own fast.py</h2>
{chr(10).join(fast)}
</main>
</body></html>
"""


# --- the picture

def find_chromium():
    """The path of a Chromium (or Chrome) executable, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


CHROMIUM_HELP = ("no Chromium found: install Debian's package with `apt-get install chromium` "
                 "(or put a chromium executable on PATH)")


def chromium(*args, timeout=120):
    """Run headless Chromium with the flags this machine needs (no sandbox as root, no network)."""
    exe = find_chromium()
    if exe is None:
        raise FileNotFoundError(CHROMIUM_HELP)
    with tempfile.TemporaryDirectory() as profile:
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--hide-scrollbars", f"--user-data-dir={profile}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


# What the README's picture leaves out, so that it opens on the step row: the gate equations
STEP_VIEW = """<style>p.lead, .part[data-part="model.py"] .block[data-section="preamble"],
.part[data-part="model.py"] .block[data-section="helpers"] { display: none; }</style></body>"""


def screenshot(page, png, width=1600, height=1000, step=True):
    """A PNG of `page` at width x height, taken by headless Chromium; step: opening on the step row."""
    png = Path(png)
    with tempfile.TemporaryDirectory() as tmp:
        view = Path(tmp, "view.html")
        text = Path(page).read_text(encoding="utf-8")
        view.write_text(text.replace("</body>", STEP_VIEW) if step else text, encoding="utf-8")
        proc = chromium(f"--screenshot={png}", f"--window-size={width},{height}", view.as_uri())
    if not png.exists():
        raise RuntimeError(f"Chromium wrote no screenshot: {proc.stderr[-500:]}")
    return png


def write_atomic(path, data):
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(data, encoding="utf-8") if isinstance(data, str) else tmp.write_bytes(data)
    tmp.replace(path)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m common.rosetta", description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "docs" / "rosetta.html"), help="the page to write")
    p.add_argument("--check", action="store_true", help="only check that --out matches the sources")
    p.add_argument("--no-screenshot", action="store_true", help="do not write the PNG beside the page")
    a = p.parse_args(argv)
    out, page = Path(a.out), render()
    if a.check:
        if not out.exists() or out.read_text(encoding="utf-8") != page:
            print(f"{out} is out of date with the sources: run `make rosetta`.", file=sys.stderr)
            return 1
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, page)
    print(f"wrote {out}")
    if not a.no_screenshot:
        if find_chromium() is None:
            print(f"no screenshot: {CHROMIUM_HELP}", file=sys.stderr)
        else:
            png = screenshot(out, out.with_suffix(".png.tmp.png"))
            png.replace(out.with_suffix(".png"))
            print(f"wrote {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
