"""The Rosetta view: the three model.py files side by side, one row per named section.

    python -m common.rosetta            # writes docs/rosetta.html (make rosetta)

Every model.py (and every fast.py) marks its sections with one comment line each, `# --- <name>`,
in the order of SECTIONS; tests/test_sections.py checks it.
"""

# The named sections of every model.py, in order (one `# --- name` marker line each)
SECTIONS = ("helpers", "step", "layer over time", "model", "forward", "loss", "gradients", "train step")
