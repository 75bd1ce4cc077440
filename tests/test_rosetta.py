"""The lesson's shape and its page: every model.py has the named sections in one order, the page
aligns the files line by line (the same statement on one row, labelled gaps), the committed
docs/rosetta.html is what the sources give, and a real headless Chromium renders it at 1600 and
1000 px with the gate lines of the step section on one row in every shown column and no line wrapped."""

import html
import json
from html.parser import HTMLParser
import re
import struct
from pathlib import Path

import pytest

from common import rosetta
from common.rosetta import FRAMEWORKS, SECTIONS, section_order

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "rosetta.html"
GATES = ("z", "i", "f", "g", "o", "c", "h")  # the step's lines `z = ...`, the four gates, `c = ...`, `h = ...`


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_every_model_file_has_every_section_once_in_order(framework):
    text = (ROOT / f"{framework}_impl" / "model.py").read_text()
    assert section_order(text) == list(SECTIONS), f"{framework}_impl/model.py sections"


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_fast_files_keep_the_same_order(framework):
    path = ROOT / f"{framework}_impl" / "fast.py"
    if not path.exists():
        pytest.skip(f"{framework} has no fast.py")
    found = section_order(path.read_text())
    assert found, f"{path.name} of {framework} has no section markers"
    assert len(set(found)) == len(found) and set(found) <= set(SECTIONS), found
    assert found == sorted(found, key=SECTIONS.index), f"{framework}_impl/fast.py sections out of order: {found}"


def test_split_sections_keeps_every_line_but_the_markers():
    text = '"""doc"""\nimport x\n# --- step\ndef f():\n    return 1\n# --- model\nclass C:\n    pass\n'
    parts = rosetta.split_sections(text)
    assert list(parts) == ["preamble", "step", "model"]
    assert parts["step"] == "def f():\n    return 1"
    assert sum(len(p.splitlines()) for p in parts.values()) == len(text.splitlines()) - 2


def test_changed_lines_counts_like_diff():
    # diff a b | grep -c '^[<>]' for these two texts is 3: one line changed (< and >), one added
    assert rosetta.changed_lines("a\nb\nc\n", "a\nB\nc\nd\n") == 3
    assert rosetta.changed_lines("same\n", "same\n") == 0


def test_align_pair_is_the_best_common_subsequence():
    a, b = "xabcd", "abzcd"
    pairs = rosetta.align_pair(len(a), len(b), lambda i, j: 1.0 if a[i] == b[j] else 0.0)
    assert [(a[i] if i is not None else None, b[j] if j is not None else None) for i, j in pairs] == [
        ("x", None), ("a", "a"), ("b", "b"), (None, "z"), ("c", "c"), ("d", "d")]


def test_normalize_reads_each_library_spelling_as_one():
    def key(text):
        return rosetta.read_lines("numpy", text)[0].key
    assert key("h = np.zeros((B, H))") == key("h = torch.zeros((B, H))") == key("h = ops.zeros((B, H))")
    assert key("def call(self, x):") == key("def forward(self, x):")
    assert key("x = y  # a comment") == key("x = y")


# Three small model.py files written here: which lines must share a row, and the gaps' labels
TOY = {
    "numpy": '''"""numpy"""
import numpy as np
# --- step
class Cell:
    def forward(self, x):
        z = np.tanh(x)
        return z

    def backward(self, dz):
        dx = dz * 2
        return dx
# --- train step
def train_step(x):
    loss = forward(x)
    grads = backward(loss)
    return loss
''',
    "torch": '''"""torch"""
import torch
# --- step
class Cell(nn.Module):
    def forward(self, x):
        z = torch.tanh(x)
        return z
# --- train step
def train_step(x):
    loss = forward(x)
    loss.backward()
    return loss
''',
    "keras": '''"""keras"""
import keras
# --- step
class Cell(keras.layers.Layer):
    def call(self, x):
        z = ops.tanh(x)
        return z
# --- train step
def train_step(x):
    return train_on_batch(x)
''',
}


@pytest.fixture
def toy(tmp_path):
    for framework, text in TOY.items():
        (tmp_path / f"{framework}_impl").mkdir()
        (tmp_path / f"{framework}_impl" / "model.py").write_text(text)
    return tmp_path


def toy_rows(root, section):
    files = [rosetta.read_lines(f, (root / f"{f}_impl" / "model.py").read_text()) for f in FRAMEWORKS]
    blocks = {name: rows for name, _, rows in rosetta.align_files(files)}
    return [tuple(line.text.strip() if line else None for line in row) for row in blocks[section]]


def test_the_same_statement_stands_on_one_row(toy):
    rows = toy_rows(toy, "step")
    assert ("z = np.tanh(x)", "z = torch.tanh(x)", "z = ops.tanh(x)") in rows
    assert ("def forward(self, x):", "def forward(self, x):", "def call(self, x):") in rows
    assert ("dx = dz * 2", None, None) in rows  # numpy's backward has no counterpart


class Lines(HTMLParser):
    """Every line element of a page: {part, section, framework, classes, label, text, tokens}."""

    def __init__(self, page):
        super().__init__()
        self.lines, self.where, self.stack, self.line = [], {}, [], None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.stack.append(tag)
        for key in ("data-part", "data-section", "data-framework"):
            if key in attrs:
                self.where[key[5:]] = attrs[key]
        classes = (attrs.get("class") or "").split()
        if "ln" in classes:
            self.line = dict(self.where, classes=classes, label=attrs.get("data-label"), text="", marked=[],
                             depth=len(self.stack))
            self.lines.append(self.line)
        elif self.line is not None and tag == "span" and "d" in classes:
            self.line["marked"].append(len(self.line["text"]))

    def handle_endtag(self, tag):
        if self.line is not None and len(self.stack) == self.line["depth"]:
            self.line = None
        self.stack.pop()

    def handle_data(self, data):
        if self.line is not None:
            self.line["text"] += data


def test_gaps_say_why_a_file_has_no_line(toy):
    lines = Lines(rosetta.render(toy)).lines
    labels = {(ln["section"], ln["framework"], ln["label"]) for ln in lines if "gap" in ln["classes"]}
    assert ("step", "torch", rosetta.AUTOGRAD) in labels and ("step", "keras", rosetta.AUTOGRAD) in labels
    assert ("train step", "keras", rosetta.TRAIN_ON_BATCH) in labels
    # torch's train step has a line where numpy's calls its backward: no gap, so no label there
    assert ("train step", "torch", rosetta.AUTOGRAD) not in labels
    shown = [ln["text"] for ln in lines if ln["label"] == rosetta.AUTOGRAD and ln["framework"] == "torch"]
    assert shown[0] == rosetta.AUTOGRAD  # the first gap of a run says it


def test_identical_rows_are_dimmed_and_differing_words_marked(toy):
    lines = Lines(rosetta.render(toy)).lines
    same = [ln["text"].lstrip("0123456789").strip() for ln in lines if "same" in ln["classes"]]
    assert "return z" in same and "z = np.tanh(x)" not in same
    (numpy_z,) = [ln for ln in lines if ln["text"].endswith("z = np.tanh(x)")]
    assert [numpy_z["text"][k:k + 2] for k in numpy_z["marked"]] == ["np"]  # tanh, x and z are the same in the three


def test_a_framework_without_fast_py_says_so():
    page = rosetta.render()
    for framework in FRAMEWORKS:
        has_fast = (ROOT / f"{framework}_impl" / "fast.py").exists()
        assert (f'data-part="{framework}-fast"' in page) == has_fast, framework
        assert (f"{framework}_impl has no fast.py" in page) == (not has_fast), framework


def test_committed_page_is_up_to_date():
    assert PAGE.exists(), "docs/rosetta.html is missing: run `make rosetta`"
    assert PAGE.read_text(encoding="utf-8") == rosetta.render(), "docs/rosetta.html is stale: run `make rosetta`"


def test_page_is_static_and_offline():
    page = rosetta.render()
    assert "<script" not in page
    assert not re.search(r'(src|href)="(https?:)?//', page), "the page must load nothing from the network"


# Run in the page by Chromium: where every line of the step section stands, per shown column, for
# each choice of the narrow-window chooser; and every line element's height.
PROBE_SCRIPT = """<script>
window.addEventListener('load', () => {
  const shown = el => el.getClientRects().length > 0;
  const measure = () => {
    const columns = {};
    for (const col of document.querySelectorAll('.part[data-part="model.py"] .block[data-section="step"] .code > .col')) {
      if (!shown(col)) continue;
      columns[col.dataset.framework] = [...col.querySelectorAll('.ln')].map(
        ln => [ln.textContent.replace(/^\\d+/, '').trim(), ln.getBoundingClientRect().top]);
    }
    const heights = {};
    for (const ln of document.querySelectorAll('.ln')) {
      if (!shown(ln)) continue;
      const h = ln.getBoundingClientRect().height;
      heights[h] = (heights[h] || 0) + 1;
    }
    const first = document.querySelector('.ln');
    return {columns, heights, lineHeight: parseFloat(getComputedStyle(first).lineHeight),
            scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth};
  };
  const result = {default: measure()};
  for (const radio of document.querySelectorAll('input[name=pair]')) {
    radio.checked = true;
    result[radio.id] = measure();
  }
  const out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
});
</script>"""


def browser_or_skip():
    if rosetta.find_chromium() is None:
        pytest.skip(rosetta.CHROMIUM_HELP + " (.ci/run installs it)")


def probe(tmp_path, width):
    page = tmp_path / f"probe{width}.html"
    page.write_text(rosetta.render().replace("</body>", PROBE_SCRIPT + "</body>"), encoding="utf-8")
    proc = rosetta.chromium(f"--window-size={width},1000", "--virtual-time-budget=5000", "--dump-dom", page.as_uri())
    found = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"Chromium did not render the page: {proc.stderr[-800:]}"
    return json.loads(html.unescape(found.group(1)))


def gate_tops(columns):
    """{framework: [top of the line `z = ...`, `i = ...`, ..., `h = ...`]} of the step section."""
    tops = {}
    for framework, lines in columns.items():
        found = {}
        for text, top in lines:
            name = text.split(" = ", 1)[0]
            if name in GATES and name not in found:
                found[name] = top
        assert list(found) == list(GATES), f"{framework}: gate lines found {list(found)}"
        tops[framework] = [found[g] for g in GATES]
    return tops


@pytest.mark.parametrize("width, shown", [(1600, {"default": FRAMEWORKS}),
                                          (1000, {f"show-{a}-{b}": (a, b) for a, b in rosetta.PAIRS})])
def test_chromium_puts_the_gate_lines_on_one_row_and_wraps_no_line(tmp_path, width, shown):
    browser_or_skip()
    result = probe(tmp_path, width)
    for choice, frameworks in shown.items():
        view = result[choice]
        assert view["innerWidth"] == width and view["scrollWidth"] <= width, view
        assert tuple(view["columns"]) == tuple(frameworks), f"{choice}: columns shown {list(view['columns'])}"
        tops = gate_tops(view["columns"])
        first = tops[frameworks[0]]
        assert first == sorted(first) and len(set(first)) == len(GATES), first  # one row each, in order
        for framework in frameworks[1:]:
            assert tops[framework] == first, f"{choice}: {framework} gate rows {tops[framework]} vs {first}"
        # every line element one line high: nothing wrapped, no gap label taller than code
        assert {float(h) for h in view["heights"]} == {view["lineHeight"]}, view["heights"]


def test_chromium_takes_the_screenshot(tmp_path):
    browser_or_skip()
    page = tmp_path / "rosetta.html"
    page.write_text(rosetta.render(), encoding="utf-8")
    png = rosetta.screenshot(page, tmp_path / "rosetta.png")
    head = png.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", head[16:24]) == (1600, 1000)
    assert png.stat().st_size > 50_000  # text and colour, not a blank page
