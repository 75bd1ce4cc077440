"""The Rosetta view: the three model.py files side by side, one row per named section.

    python -m common.rosetta                 # docs/rosetta.html, and docs/rosetta.png if Chromium is here
    python -m common.rosetta --check         # exit 1 if docs/rosetta.html is older than the code

Every model.py marks its sections with one comment line each, `# --- <name>`, in the order of
SECTIONS (tests/test_sections.py checks it); each fast.py marks the ones it has, in the same order.
The page is one static file: code highlighted by pygments into inline CSS, no script, no network.
"""

import argparse
import difflib
import html
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORKS = ("numpy", "torch", "keras")
MARKER = "# --- "

# The named sections of every model.py, in order (one `# --- name` marker line each)
SECTIONS = ("helpers", "step", "layer over time", "model", "forward", "loss", "gradients", "train step")

# What each row shows, and what stands in for it in each framework (the page's one-line labels)
ROWS = {
    "preamble": ("What the file is, and what it imports",
                 {"numpy": "numpy only", "torch": "torch and torch.nn",
                  "keras": "keras and keras.ops only: the backend is chosen by KERAS_BACKEND"}),
    "helpers": ("What each framework takes from its library, or writes itself",
                {"numpy": "written here: sigmoid, softmax cross-entropy and its gradient",
                 "torch": "torch.sigmoid and torch.tanh, torch.optim's optimizer",
                 "keras": "ops.sigmoid and ops.tanh, keras.optimizers configured to the same formulas"}),
    "step": ("One time step: z = x_t @ W_x + h_prev @ W_h + b, then the gates i, f, g, o",
             {"numpy": "a class with forward and backward by hand, the cache between them",
              "torch": "an nn.Module cell: forward only, autograd records it",
              "keras": "a keras.layers.Layer cell: call() is the math, state_size what RNN carries"}),
    "layer over time": ("One layer over T steps",
                        {"numpy": "loops forward, then reversed(range(T)) backward, the weight gradients summed",
                         "torch": "an nn.Module looping over time (nn.LSTM on the layer path)",
                         "keras": "keras.layers.RNN runs the cell (keras.layers.LSTM on the layer path)"}),
    "model": ("The stack of L layers and the head, loaded with the interchange weights",
              {"numpy": "the layers' arrays", "torch": "nn.Parameters (nn.LSTM and nn.Linear store W transposed)",
               "keras": "the layers' variables, then run() once on keras.Input: a keras.Model, compiled"}),
    "forward": ("Logits and the new state", {"numpy": "plain calls", "torch": "under torch.no_grad()",
                                             "keras": "run() builds the graph; predict_on_batch runs it"}),
    "loss": ("Mean cross-entropy over the B x T positions",
             {"numpy": "the helper's", "torch": "F.cross_entropy", "keras": "the compiled loss"}),
    "gradients": ("The backward pass",
                  {"numpy": "written by hand: the chain rule through every step in reverse",
                   "torch": "loss.backward(): autograd",
                   "keras": "the one place Keras 3 leaves to the backend: a tape, jax.grad or autograd"}),
    "train step": ("One optimizer update, the state carried to the next batch",
                   {"numpy": "clip, then numpy_impl/optim.py by hand",
                    "torch": "clip_grad_norm_ and optimizer.step()",
                    "keras": "train_on_batch: Keras differentiates, clips and steps"}),
}
FILES = {"model.py": "The lesson: model.py", "fast.py": "What it takes to be fast: fast.py"}


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


def highlight(code):
    from pygments import highlight as pyg_highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer
    return pyg_highlight(code, PythonLexer(), HtmlFormatter(nowrap=True))


def css():
    from pygments.formatters import HtmlFormatter
    return HtmlFormatter(style="friendly").get_style_defs(".code") + """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.5em; margin: 0 0 .3em; } h2 { margin-top: 2em; }
p.lead { max-width: 70em; }
.grid { display: grid; grid-template-columns: repeat(3, minmax(0, 1fr)); gap: 0 .8em; }
.head { position: sticky; top: 0; background: #fff; font-weight: 600; padding: .4em 0;
        border-bottom: 2px solid #888; z-index: 1; }
.label { grid-column: 1 / -1; margin-top: 1.2em; padding: .35em .6em; background: #eef3f8;
         border-left: 4px solid #4a7ab0; }
.label b { font-family: ui-monospace, monospace; }
.cell { min-width: 0; }
.note { font-size: .85em; color: #555; font-style: italic; margin: .3em 0; }
pre.code { margin: 0; padding: .5em; background: #fafafa; border: 1px solid #e4e4e4;
           font-size: 12px; line-height: 1.35; white-space: pre-wrap; overflow-wrap: anywhere; }
.empty { color: #777; }
"""


def render(root=ROOT):
    """The whole page as one HTML string (deterministic: the same sources give the same bytes)."""
    parts = []
    for filename, title in FILES.items():
        texts = {f: (root / f"{f}_impl" / filename) for f in FRAMEWORKS}
        texts = {f: p.read_text(encoding="utf-8") for f, p in texts.items() if p.exists()}
        if not texts:
            continue
        sections = {f: split_sections(t) for f, t in texts.items()}
        names = ["preamble"] + [s for s in SECTIONS if any(s in secs for secs in sections.values())]
        names += [s for secs in sections.values() for s in secs if s not in names]  # unknown: shown last
        counts = ", ".join(f"{a} vs {b}: {changed_lines(texts[a], texts[b])}"
                           for i, a in enumerate(FRAMEWORKS) for b in FRAMEWORKS[i + 1:] if a in texts and b in texts)
        rows = [f'<h2 id="{filename}">{html.escape(title)}</h2>',
                f'<p class="lead">Changed lines between the files (as <code>make diff</code> counts them): {counts}.</p>',
                f'<div class="grid" data-file="{filename}">']
        rows += [f'<div class="head">{f}_impl/{filename}</div>' if f in texts else
                 f'<div class="head">{f}_impl: no {filename}</div>' for f in FRAMEWORKS]
        for name in names:
            title_line, notes = ROWS.get(name, ("", {}))
            rows.append(f'<div class="label section" data-section="{html.escape(name)}"><b>{html.escape(name)}</b>'
                        f'{" &middot; " + html.escape(title_line) if title_line else ""}</div>')
            for f in FRAMEWORKS:
                note = notes.get(f, "")
                code = sections.get(f, {}).get(name)
                body = (f'<pre class="code">{highlight(code)}</pre>' if code else
                        f'<pre class="code empty">{html.escape(f"(no {name} section here" + (f": {note})" if note else ")"))}</pre>')
                rows.append(f'<div class="cell" data-section="{html.escape(name)}" data-framework="{f}">'
                            f'<div class="note">{html.escape(f + ": " + note) if note else "&nbsp;"}</div>{body}</div>')
        rows.append("</div>")
        parts.append("\n".join(rows))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>LSTM Rosetta: numpy, PyTorch and Keras side by side</title>
<style>{css()}</style></head>
<body>
<h1>LSTM Rosetta: one character-level LSTM in numpy, PyTorch and Keras 3</h1>
<p class="lead">Each row is one named section of the three files (<code># --- name</code> in the code), in the same
order in every file; the label says what each framework does there. numpy writes the backward pass by hand
where PyTorch calls <code>loss.backward()</code> and Keras trains with <code>train_on_batch</code>.
The lesson files come first; the tuned code of each framework (<code>fast.py</code>) follows.
Generated by <code>make rosetta</code> from the sources.</p>
<p class="lead">{" &middot; ".join(f'<a href="#{f}">{html.escape(t)}</a>' for f, t in FILES.items())}</p>
{chr(10).join(parts)}
</body></html>
"""


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


def screenshot(page, png, width=1600, height=1000):
    """A PNG of the top of `page` at width x height, taken by headless Chromium."""
    png = Path(png)
    proc = chromium(f"--screenshot={png}", f"--window-size={width},{height}", Path(page).resolve().as_uri())
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
