"""Validation loss over a whole text, the state carried, in nats and bits per character.

    result = text_loss(model, val_data)              # every one of the len(val_data) - 1 targets
    result.nats, result.bits                         # mean cross-entropy per character
    quick = text_loss(model, val_data, per_span=1280) # the quick figure printed during training

How: the text is cut into `streams` contiguous spans read side by side (a batch of rows); every
span's state starts at zero and is warmed over the `warmup` characters just before the span,
which are read but not scored, so each span starts as if the state had been carried to it
through the whole text; the first span starts at the text's own start from zeros. Every
target (data[1:]) is scored exactly once. streams=1 reads the text as one stream from zeros.

Why a warm-up (README: Baselines): a model trained with the state carried sees a zero state only
at an epoch's start, and scores characters read from zeros badly (9.3 nats per character for one
validation stream starting at "\\n\\nGONZALO:"); the old quick validation started 32 streams from
zeros at arbitrary points and read high and unsteady against the whole text.

per_span: score at most this many characters of each span (the quick validation: `streams` windows
spread evenly over the whole text, each warmed, instead of the whole of it).
"""

from dataclasses import dataclass

import numpy as np

WARMUP = 256       # characters read before each span, not scored
STREAMS = 32       # spans read side by side
CHUNK = 256        # columns per forward call (any: the state is carried between calls)


@dataclass
class TextLoss:
    nats: float        # mean cross-entropy per scored character, natural log
    chars: int         # characters scored

    @property
    def bits(self):
        return self.nats / np.log(2)


def spans(n, streams, warmup, per_span=None):
    """[(read_from, score_from, score_to)] per span over n targets: targets score_from..score_to - 1,
    read from read_from (the warm-up before score_from)."""
    bounds = np.linspace(0, n, min(streams, n) + 1).astype(int)
    out = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        end = b if per_span is None else min(b, a + per_span)
        out.append((max(0, a - warmup), a, end))
    return out


def text_loss(model, data, streams=STREAMS, warmup=WARMUP, per_span=None, chunk=CHUNK):
    """TextLoss of `model` (any CharLSTM: only forward is used) predicting data[1:] from data[:-1]."""
    data = np.asarray(data, dtype=np.int64)
    n = len(data) - 1  # targets
    parts = spans(n, streams, warmup, per_span)
    length = max(end - start for start, _, end in parts)
    length = -(-length // chunk) * chunk  # every forward call (S, chunk): one shape, one trace
    S = len(parts)
    x = np.zeros((S, length), np.int64)
    y = np.zeros((S, length), np.int64)
    scored = np.zeros((S, length), bool)
    for s, (start, a, end) in enumerate(parts):
        x[s, :end - start] = data[start:end]
        y[s, :end - start] = data[start + 1:end + 1]
        scored[s, a - start:end - start] = True
    state, total = None, 0.0
    for k in range(0, length, chunk):
        cols = slice(k, k + chunk)
        if not scored[:, k:].any():
            break
        logits, state = model.forward(x[:, cols], state)
        z = np.asarray(logits, dtype=np.float64)  # (S, chunk, V)
        zmax = z.max(axis=-1, keepdims=True)
        logsumexp = np.log(np.exp(z - zmax).sum(axis=-1)) + zmax[..., 0]  # (S, chunk)
        nll = logsumexp - np.take_along_axis(z, y[:, cols, None], axis=-1)[..., 0]
        total += float(nll[scored[:, cols]].sum())
    chars = int(scored.sum())
    return TextLoss(total / chars, chars)


def checkpoint_loss(checkpoint, framework="numpy", path=None, corpus=None, streams=STREAMS, warmup=WARMUP):
    """(TextLoss, Checkpoint) of a checkpoint on the whole validation text of its corpus (the run's,
    from the checkpoint's metadata, unless `corpus` names one), in `framework` and `path`."""
    from common.batches import split
    from common.checkpoint import load_checkpoint
    from common.corpus import load_corpus
    from common.errors import ConfigError
    from common.frameworks import make_model

    ckpt = load_checkpoint(checkpoint)
    name = corpus or (ckpt.run or {}).get("corpus")
    if name is None:
        raise ConfigError(f"{checkpoint} does not say which corpus it was trained on; give --corpus.")
    text = load_corpus(name)
    _, val_data = split(text.data)
    model = make_model(framework, ckpt.config, ckpt.weights, path=path)
    return text_loss(model, val_data, streams=streams, warmup=warmup), ckpt


def main(argv=None):
    """python -m common.evaluation CHECKPOINT [--framework F] [--path P]: the whole-text validation loss."""
    import argparse
    import json
    import sys

    from common.errors import RosettaError

    p = argparse.ArgumentParser(prog="python -m common.evaluation", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="an interchange checkpoint (.safetensors)")
    p.add_argument("--framework", default="numpy", help="numpy, torch or keras (default numpy)")
    p.add_argument("--path", default=None, help="the framework's path (default its default)")
    p.add_argument("--corpus", default=None, help="the corpus (default: the one the checkpoint was trained on)")
    p.add_argument("--streams", type=int, default=STREAMS, help=f"spans read side by side (default {STREAMS}; 1: one stream from zeros)")
    p.add_argument("--warmup", type=int, default=WARMUP, help=f"characters read before each span, unscored (default {WARMUP})")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    a = p.parse_args(argv)
    try:
        result, ckpt = checkpoint_loss(a.checkpoint, a.framework, a.path, a.corpus, a.streams, a.warmup)
    except RosettaError as e:
        print(f"rosetta: error: {e}", file=sys.stderr)
        return 2
    if a.json:
        print(json.dumps({"nats": result.nats, "bits": result.bits, "chars": result.chars, "framework": a.framework,
                          "path": a.path, "dtype": ckpt.config.dtype}))
    else:
        print(f"{a.checkpoint}: validation loss {result.nats:.4f} nats ({result.bits:.4f} bits) per character "
              f"over {result.chars:,} next-character targets ({a.framework}{'/' + a.path if a.path else ''})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
