"""The lesson's shape and its page: every model.py has the named sections in one order, the
committed docs/rosetta.html is what the sources give, and a real headless Chromium renders it with
all three columns in every row and nothing wider than a 1600 px window."""

import json
import os
import re
import struct
from pathlib import Path

import pytest

from common import rosetta
from common.rosetta import FRAMEWORKS, SECTIONS, section_order

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "rosetta.html"


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


def test_committed_page_is_up_to_date():
    assert PAGE.exists(), "docs/rosetta.html is missing: run `make rosetta`"
    assert PAGE.read_text(encoding="utf-8") == rosetta.render(), "docs/rosetta.html is stale: run `make rosetta`"


def test_page_is_static_and_offline():
    page = rosetta.render()
    assert "<script" not in page
    assert not re.search(r'(src|href)="(https?:)?//', page), "the page must load nothing from the network"


PROBE_SCRIPT = """<script>
window.addEventListener('load', () => {
  const rows = {};
  for (const label of document.querySelectorAll('.label.section')) {
    const name = label.dataset.section;
    const grid = label.parentElement.dataset.file;
    rows[grid + '/' + name] = [...label.parentElement.querySelectorAll(
      `.cell[data-section="${CSS.escape(name)}"]`)].map(c => [c.dataset.framework, c.querySelector('pre.empty') ? 0 : c.querySelector('pre').textContent.length]);
  }
  const out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = JSON.stringify({rows, scrollWidth: document.documentElement.scrollWidth,
                                    innerWidth: window.innerWidth});
  document.body.appendChild(out);
});
</script>"""


def browser_or_fail():
    if rosetta.find_chromium() is None:
        if os.environ.get("ROSETTA_SKIP_BROWSER"):
            pytest.skip(rosetta.CHROMIUM_HELP)
        pytest.fail(rosetta.CHROMIUM_HELP + "; or set ROSETTA_SKIP_BROWSER=1 to skip this test")


def test_chromium_renders_every_row_with_three_columns_and_no_horizontal_overflow(tmp_path):
    browser_or_fail()
    probe = tmp_path / "probe.html"
    probe.write_text(rosetta.render().replace("</body>", PROBE_SCRIPT + "</body>"), encoding="utf-8")
    proc = rosetta.chromium("--window-size=1600,1000", "--virtual-time-budget=5000", "--dump-dom", probe.as_uri())
    found = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"Chromium did not render the page: {proc.stderr[-800:]}"
    result = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    lesson = {name.split("/", 1)[1]: cells for name, cells in result["rows"].items() if name.startswith("model.py/")}
    assert set(SECTIONS) <= set(lesson), f"rows rendered: {sorted(lesson)}"
    for name, cells in lesson.items():
        assert [f for f, _ in cells] == list(FRAMEWORKS), f"row {name}: {cells}"
    for name in SECTIONS:  # every lesson file has code in every section
        assert all(n > 0 for _, n in lesson[name]), f"row {name} has an empty column: {lesson[name]}"
    assert result["scrollWidth"] <= result["innerWidth"] == 1600, result


def test_chromium_takes_the_screenshot(tmp_path):
    browser_or_fail()
    page = tmp_path / "rosetta.html"
    page.write_text(rosetta.render(), encoding="utf-8")
    png = rosetta.screenshot(page, tmp_path / "rosetta.png")
    head = png.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", head[16:24]) == (1600, 1000)
    assert png.stat().st_size > 50_000  # text and colour, not a blank page
