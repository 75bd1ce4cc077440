"""Validation loss of a text in nats and bits per character, under two protocols.

    result = text_loss(model, val_data)              # carried: every one of the len(val_data) - 1 targets
    result.nats, result.bits                         # mean cross-entropy per character
    quick = text_loss(model, val_data, per_span=1280) # the quick figure printed during training
    blocks = block_loss(model, val_data)             # nanoGPT's: random 256-character blocks from zeros
    held_out = val_half(val_data, "second")          # the half no choice was made on

Carried (text_loss, the default figure):
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
spread evenly over the first half of the validation text, each warmed, instead of the whole of it).

Blocks (block_loss, nanoGPT's estimate_loss): blocks of `block` characters at random offsets
i (x = data[i:i + block], y = data[i + 1:i + 1 + block]), each read from a zero state, the loss
averaged over every position of every block, so the mean context is about block / 2 characters.
Offsets come from np.random.default_rng(seed) in draws of `batch`; by default blocks are drawn
until the standard error of the mean (the sample standard deviation of the per-block losses over
the square root of their number) is below target_se. blocks="all" reads every non-overlapping
block in order instead.

Halves (val_half): `rosetta train`'s quick validation, and with it --keep best and every choice
made from it, reads only the first half of the validation text; the second half is the held-out
figure (`rosetta eval --half second`), and the whole is the text nanoGPT reports on.
"""

from dataclasses import dataclass

import numpy as np

from common.errors import ConfigError

WARMUP = 256       # characters read before each span, not scored
STREAMS = 32       # spans read side by side
CHUNK = 256        # columns per forward call (any: the state is carried between calls)
PROTOCOLS = ("carried", "blocks")
HALVES = ("whole", "first", "second")
BLOCK = 256        # nanoGPT's shakespeare_char block_size
TARGET_SE = 0.002  # nats: blocks are drawn until the standard error is below this
MIN_BLOCKS = 256   # drawn before the standard error is trusted
MAX_BLOCKS = 50_000  # the draws stop here even if the standard error is still above the target


@dataclass
class TextLoss:
    nats: float        # mean cross-entropy per scored character, natural log
    chars: int         # characters scored

    @property
    def bits(self):
        return self.nats / np.log(2)


@dataclass
class BlockLoss:
    nats: float        # mean cross-entropy over every position of every block, natural log
    chars: int         # positions scored: blocks * block
    blocks: int        # blocks read, each from a zero state
    se: float          # standard error of nats: std of the per-block losses / sqrt(blocks); nan for one block

    @property
    def bits(self):
        return self.nats / np.log(2)


def val_half(val_data, half):
    """The part of the validation text that `half` names: "whole", "first" (val_data[:m]) or "second"
    (val_data[m:]), m = len(val_data) // 2. Each half is a text of its own, so the one target across
    the boundary (val_data[m], predicted from val_data[m - 1]) is scored by neither half."""
    if half not in HALVES:
        raise ConfigError(f"unknown half {half!r}; choose one of {', '.join(HALVES)}.")
    m = len(val_data) // 2
    return {"whole": val_data, "first": val_data[:m], "second": val_data[m:]}[half]


def nll(logits, y):
    """The cross-entropy of every position, float64 (..., T): logits (..., T, V), y int (..., T)."""
    z = np.asarray(logits, dtype=np.float64)
    zmax = z.max(axis=-1, keepdims=True)
    logsumexp = np.log(np.exp(z - zmax).sum(axis=-1)) + zmax[..., 0]
    return logsumexp - np.take_along_axis(z, y[..., None], axis=-1)[..., 0]


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
        total += float(nll(logits, y[:, cols])[scored[:, cols]].sum())
    chars = int(scored.sum())
    return TextLoss(total / chars, chars)


def block_means(model, data, offsets, block, batch):
    """The mean loss of each block data[i:i + block] -> data[i + 1:i + 1 + block], i in `offsets`,
    each read from a zero state, `batch` blocks per forward call (a short last call padded to the
    same shape, so a compiled model traces once)."""
    out = []
    for k in range(0, len(offsets), batch):
        part = offsets[k:k + batch]
        padded = np.concatenate([part, np.full(batch - len(part), part[0])])
        cols = padded[:, None] + np.arange(block)
        logits, _ = model.forward(data[cols], None)
        out.append(nll(logits, data[cols + 1]).mean(axis=1)[:len(part)])
    return np.concatenate(out)


def standard_error(means):
    return float(np.std(means, ddof=1) / np.sqrt(len(means))) if len(means) > 1 else float("nan")


def block_loss(model, data, block=BLOCK, seed=0, blocks=None, target_se=TARGET_SE, batch=64):
    """BlockLoss of `model` (only forward is used) under nanoGPT's estimate_loss protocol on `data`.
    blocks: None (draw `batch` offsets at a time until the standard error is below target_se, at
    least MIN_BLOCKS and at most MAX_BLOCKS), a number (exactly that many, the last draw the rest)
    or "all" (every non-overlapping block, in order)."""
    check_blocks(block, blocks)
    data = np.asarray(data, dtype=np.int64)
    if len(data) < block + 1:
        raise ConfigError(f"the text has {len(data):,} characters, too few for one block of {block} "
                          f"(it needs {block + 1}); use a smaller --block.")
    if blocks == "all":
        means = block_means(model, data, np.arange(0, len(data) - block, block), block, batch)
        return BlockLoss(float(means.mean()), len(means) * block, len(means), standard_error(means))
    rng = np.random.default_rng(seed)
    means = np.zeros(0)
    while not enough(means, blocks, target_se):
        size = batch if blocks is None else min(batch, blocks - len(means))
        offsets = rng.integers(0, len(data) - block, size)  # nanoGPT: torch.randint(len(data) - block_size)
        means = np.concatenate([means, block_means(model, data, offsets, block, batch)])
    return BlockLoss(float(means.mean()), len(means) * block, len(means), standard_error(means))


def enough(means, blocks, target_se):
    if blocks is not None:
        return len(means) >= blocks
    return len(means) >= MAX_BLOCKS or (len(means) >= MIN_BLOCKS and standard_error(means) < target_se)


def check_blocks(block, blocks):
    """Refuse a block length or a number of blocks that cannot be read, in one sentence."""
    if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or block < 1:
        raise ConfigError(f"the block length must be a whole number of at least 1, got {block!r}.")
    if blocks is not None and blocks != "all" and (
            isinstance(blocks, bool) or not isinstance(blocks, (int, np.integer)) or blocks < 1):
        raise ConfigError(f"the number of blocks must be a whole number of at least 1 or 'all', got {blocks!r}.")


def check_options(protocol="carried", half="whole", block=BLOCK, blocks=None):
    """Refuse an unknown protocol or half, or a block length or number of blocks that cannot be read."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}.")
    val_half([], half)
    check_blocks(block, blocks)


def score(model, val_data, protocol="carried", half="whole", streams=STREAMS, warmup=WARMUP, block=BLOCK, seed=0,
          blocks=None):
    """TextLoss (protocol "carried") or BlockLoss ("blocks") of `model` on `half` of the validation text."""
    check_options(protocol, half, block, blocks)
    text = val_half(val_data, half)
    if protocol == "carried":
        return text_loss(model, text, streams=streams, warmup=warmup)
    return block_loss(model, text, block=block, seed=seed, blocks=blocks)


def describe(result, half, val_data, seed=0, blocks=None, warmup=WARMUP, target_se=TARGET_SE):
    """The words after "validation loss": the figure, the protocol and the half it was read on, e.g.
    1.4821 nats (2.1382 bits) per character, nanoGPT's block protocol: 9,472 random 256-character
    blocks from a zero state (seed 0, standard error 0.0020), the second half of the validation text
    (55,770 characters, held out)."""
    figure = f"{result.nats:.4f} nats ({result.bits:.4f} bits) per character"
    n = len(val_half(val_data, half))
    text = {"whole": f"the whole validation text ({n:,} characters)",
            "first": f"the first half of the validation text ({n:,} characters, the one training validates on)",
            "second": f"the second half of the validation text ({n:,} characters, held out)"}[half]
    if isinstance(result, TextLoss):
        return (f"{figure}, the state carried: {result.chars:,} next-character targets, each span warmed over "
                f"{warmup} characters, {text}")
    block = result.chars // result.blocks
    if blocks == "all":
        how = (f"every one of the {result.blocks:,} non-overlapping {block}-character blocks in order, from a zero "
               f"state (standard error {result.se:.4f})")
    else:
        capped = blocks is None and not result.se < target_se
        how = (f"{result.blocks:,} random {block}-character blocks from a zero state (seed {seed}, standard error "
               f"{result.se:.4f}" + (f", still above {target_se} at the cap of {MAX_BLOCKS:,} blocks)" if capped else ")"))
    return f"{figure}, nanoGPT's block protocol: {how}, {text}"


def blocks_value(text):
    """argparse type of --blocks: a whole number of at least 1, or "all"."""
    import argparse

    if text == "all":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1 or 'all', got {text!r}")
    return value


def add_protocol_args(parser):
    """--protocol, --block, --blocks, --seed and --half, for rosetta eval and python -m common.evaluation."""
    from common.cli import count, positive_int
    parser.add_argument("--protocol", choices=PROTOCOLS, default="carried",
                        help="carried: every character, the state carried after a warm-up (the default figure); "
                             "blocks: nanoGPT's estimate_loss, random blocks each read from a zero state")
    parser.add_argument("--block", type=positive_int, default=BLOCK, metavar="N",
                        help=f"characters per block for --protocol blocks (default {BLOCK}, nanoGPT's block_size)")
    parser.add_argument("--blocks", type=blocks_value, default=None, metavar="N|all",
                        help=f"blocks to read: a number, or all (every non-overlapping block, in order); default: "
                             f"until the standard error is below {TARGET_SE} ({MIN_BLOCKS} to {MAX_BLOCKS:,} blocks)")
    parser.add_argument("--seed", type=count, default=0, metavar="S", help="seed of the block offsets (default 0)")
    parser.add_argument("--half", choices=HALVES, default="whole",
                        help="the part of the validation text scored: whole (default; what nanoGPT reports on), first "
                             "(the half training validates on) or second (held out: no choice was made on it)")


def checkpoint_model(checkpoint, framework="numpy", path=None, corpus=None):
    """(model, validation text, Checkpoint, corpus name) of a checkpoint: the validation text of its
    corpus (the run's, from the checkpoint's metadata, unless `corpus` names one), in `framework` and `path`."""
    from common.batches import split
    from common.checkpoint import load_checkpoint
    from common.corpus import load_corpus
    from common.frameworks import make_model

    ckpt = load_checkpoint(checkpoint)
    name = corpus or (ckpt.run or {}).get("corpus")
    if name is None:
        raise ConfigError(f"{checkpoint} does not say which corpus it was trained on; give --corpus.")
    text = load_corpus(name)
    load_checkpoint(checkpoint, vocab=text.vocab)  # a corpus of another vocabulary is refused
    _, val_data = split(text.data)
    return make_model(framework, ckpt.config, ckpt.weights, path=path), val_data, ckpt, text.name


def checkpoint_loss(checkpoint, framework="numpy", path=None, corpus=None, streams=STREAMS, warmup=WARMUP,
                    protocol="carried", half="whole", block=BLOCK, seed=0, blocks=None):
    """(TextLoss or BlockLoss, Checkpoint) of a checkpoint on `half` of its validation text under `protocol`."""
    check_options(protocol, half, block, blocks)  # before the corpus and the model are loaded
    model, val_data, ckpt, _ = checkpoint_model(checkpoint, framework, path, corpus)
    return score(model, val_data, protocol, half, streams, warmup, block, seed, blocks), ckpt


def main(argv=None):
    """python -m common.evaluation CHECKPOINT [--framework F] [--path P] [--protocol carried|blocks] [--half H]:
    the validation loss (Keras' backend: the KERAS_BACKEND environment variable)."""
    import argparse
    import json
    import sys

    from common.cli import count, positive_int
    from common.errors import RosettaError

    p = argparse.ArgumentParser(prog="python -m common.evaluation", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="an interchange checkpoint (.safetensors)")
    p.add_argument("--framework", default="numpy", help="numpy, torch or keras (default numpy)")
    p.add_argument("--path", default=None, help="the framework's path (default its default)")
    p.add_argument("--corpus", default=None, help="the corpus (default: the one the checkpoint was trained on)")
    p.add_argument("--streams", type=positive_int, default=STREAMS,
                   help=f"spans read side by side (default {STREAMS}; 1: one stream from zeros)")
    p.add_argument("--warmup", type=count, default=WARMUP, help=f"characters read before each span, unscored (default {WARMUP})")
    add_protocol_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    a = p.parse_args(argv)
    try:
        check_options(a.protocol, a.half, a.block, a.blocks)
        model, val_data, ckpt, _ = checkpoint_model(a.checkpoint, a.framework, a.path, a.corpus)
        result = score(model, val_data, a.protocol, a.half, a.streams, a.warmup, a.block, a.seed, a.blocks)
    except RosettaError as e:
        print(f"rosetta: error: {e}", file=sys.stderr)
        return 2
    if a.json:
        carried = isinstance(result, TextLoss)
        print(json.dumps({"nats": result.nats, "bits": result.bits, "chars": result.chars, "framework": a.framework,
                          "path": a.path, "dtype": ckpt.config.dtype, "protocol": a.protocol, "half": a.half,
                          "block": None if carried else a.block, "blocks": None if carried else result.blocks,
                          "se": None if carried or not np.isfinite(result.se) else result.se}))
    else:
        print(f"{a.checkpoint}: validation loss {describe(result, a.half, val_data, a.seed, a.blocks, a.warmup)} "
              f"({a.framework}{'/' + a.path if a.path else ''})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
