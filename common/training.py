"""The one training loop (docs/DESIGN.md, "The training loop"): the command line and anything else that
trains call `train`; it reaches the model only through the CharLSTM interface.

    plan = Plan(iters=500, save="m.safetensors", log="m.csv", minutes=10)
    status = train(model, framework, corpus, config, train_batches, val_batches, plan)

What it owns:
  steps and epochs   step s (0-based) is batch k of epoch e, (e, k) = divmod(s, len(batches)); the
                     carried state is reset at k == 0 (every step for windows). --iters is the
                     total: a run resumed at step 20 with iters 40 runs steps 21..40.
  checkpoints        at every validation point and at the end, written atomically. keep="best":
                     m.safetensors holds the weights of the best validation loss so far (on the
                     first half of the validation text; the second is held out), and
                     m.last.safetensors beside it the last state; keep="last": m.safetensors is the
                     last state. Every file also holds the training state (get_training_state: the
                     optimizer's slots, the carried LSTM state) and, as metadata, the step, epoch,
                     batch, the characters read, the corpus (name and sha256 of its text), the
                     losses of the progress line in progress, the best validation loss and the RNG
                     (there is no running generator: the batches of epoch e come from (seed, e),
                     the sample at step s from seed + s). Resuming from that file with the
                     same config and framework repeats the uninterrupted run bit for bit.
  stop requests      SIGINT (Ctrl-C), SIGTERM, SIGHUP: stop after the current step, save the state,
                     say where, exit 128 + the signal's number; a second one stops at once.
  time budget        minutes: no step starts after it; then validation and saving as at the end.
  divergence         the loss not finite, or the mean loss of the last 10 steps above DIVERGE times
                     the run's first loss: stop with a sentence (exit 2), saving nothing, so the best
                     checkpoint stays.
  progress and log   a line every log_every steps (loss, chars/s, elapsed, time left); log: a CSV
                     row per step (LOG_COLUMNS), val_loss filled at validation points.
"""

import csv
import hashlib
import math
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import CheckpointError, ConfigError
from common.memory import activation_bytes

VAL_BATCHES = 20    # validation loss: the mean over at most this many batches of the val text's first half
DIVERGE = 2.0       # stop when the mean of the last DIVERGE_WINDOW losses exceeds this times the first
DIVERGE_WINDOW = 10
LOG_COLUMNS = ("step", "epoch", "loss", "val_loss", "chars_per_s", "elapsed")
MEMORY_MARGIN = 1.5  # frameworks hold gradients and workspaces beside the bound below
STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


@dataclass
class Plan:
    """What a run does, besides the model and its data."""
    iters: int                  # total steps, counted from the run's first (a resumed run continues)
    val_every: int = 100        # validation (and checkpoint) every this many steps; 0: at the end only
    log_every: int = 10         # a progress line every this many steps
    sample_every: int = 0       # a generated sample every this many steps; 0: never
    sample_length: int = 200    # characters per sample
    minutes: float = None       # time budget; None: none
    save: str = None            # checkpoint path; None: nothing saved
    keep: str = "best"          # "best" (validation decides) or "last"
    log: str = None             # CSV of every step; None: none


# ---------------------------------------------------------------------------------------------
# Before anything is allocated: memory, threads, the files a run may write

def memory_needed(config):
    """Bytes a training step holds: common/memory.py's bound (the step's activation cache, the
    weights, their gradients and the optimizer's slots; the benchmark's too) times MEMORY_MARGIN."""
    return MEMORY_MARGIN * activation_bytes(config)


def memory_available():
    """MemAvailable of /proc/meminfo in bytes, or None where there is none."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_memory(config, available=None):
    """Refuse, in one sentence saying what fits, a config whose training needs more memory than is free."""
    available = memory_available() if available is None else available
    need = memory_needed(config)
    if available is None or need <= available:
        return
    low, high = 0, config.hidden_size  # the largest hidden size that fits, other settings kept
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if memory_needed(config.replace(hidden_size=mid)) <= available else (low, mid - 1)
    fits = (f"at most --hidden-size {low} fits with these settings" if low
            else "no hidden size fits with these settings; lower --batch-size or --seq-length")
    raise ConfigError(f"training {config.num_layers} layer(s) of {config.hidden_size} units (B={config.batch_size}, "
                      f"T={config.seq_length}, {config.dtype}) needs about {gib(need)} of memory but this machine "
                      f"has {gib(available)} available; {fits}.")


def gib(n):
    return f"{n / 2 ** 30:,.1f} GiB" if n >= 2 ** 30 else f"{n / 2 ** 20:,.0f} MiB"


def warn_threads(threads):
    cores = os.cpu_count()
    if threads is not None and cores and threads > cores:
        print(f"rosetta: warning: --threads {threads} is more than the {cores} cores of this machine; the extra "
              f"threads wait for each other and slow training down, use --threads {cores} or fewer.",
              file=sys.stderr, flush=True)


def last_path(save):
    """Where keep="best" keeps the last state: m.safetensors -> m.last.safetensors."""
    save = Path(save)
    return save.with_name(f"{save.stem}.last{save.suffix or '.safetensors'}")


def check_save_path(save, corpus=None, log=None):
    """Refuse, before anything is read or trained, a --save or --log that would replace what is not
    ours: a folder, the corpus, a file that is not an lstm-rosetta checkpoint or training log."""
    from common.checkpoint import peek_metadata

    read_log(log)
    if save is None:
        return
    if str(save).endswith(("/", os.sep)) or os.path.isdir(save):
        raise CheckpointError(f"--save {save} names a folder; give a file name such as "
                              f"{os.path.join(save, 'model.safetensors')}.")
    if corpus is not None and os.path.exists(corpus) and os.path.exists(save) and os.path.samefile(save, corpus):
        raise CheckpointError(f"--save {save} is the corpus file; choose another name, such as "
                              f"{Path(save).with_suffix('.safetensors')}.")
    if log is not None and os.path.abspath(log) == os.path.abspath(save):
        raise CheckpointError(f"--save and --log both name {save}; give each its own file.")
    for path in (Path(save), last_path(save)):
        if path.exists():
            if not path.is_file():
                raise CheckpointError(f"--save would replace {path}, which is not a file; choose another name.")
            try:
                peek_metadata(path)
            except CheckpointError as e:
                raise CheckpointError(f"--save would replace {e}; choose a new file name (a run replaces only "
                                      f"its own checkpoints).") from None


def read_log(log):
    """The rows of an existing --log file (None when there is none), refused in one sentence when
    it is a folder or not a rosetta training log (a checkpoint, another CSV, text that is not UTF-8),
    so that a run never overwrites it."""
    from common.checkpoint import file_kind

    if log is None or not os.path.exists(log):
        return None
    path = Path(log)
    if path.is_dir():
        raise ConfigError(f"--log {log} is a folder; give a file name such as {path / 'train.csv'}.")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except OSError as e:
        raise ConfigError(f"cannot read the log {log} ({e.strerror or e}); choose a readable path or a new name.") from None
    except (UnicodeDecodeError, csv.Error):
        rows = None
    if not rows or tuple(rows[0]) != LOG_COLUMNS or not all(r[0].isdigit() for r in rows[1:] if r):
        kind = file_kind(path) or "not UTF-8 text"
        what = "" if kind == "a rosetta training log (CSV)" else f" ({kind})"
        raise ConfigError(f"--log {log} exists and is not a rosetta training log{what}; choose a new file name "
                          f"(a run replaces only its own log).")
    return rows


def check_same_run(save, corpus, config, force=False, resume=None):
    """Refuse to replace a checkpoint of another run (another corpus or config) unless force."""
    import json

    from common.checkpoint import peek_metadata

    if save is None or force:
        return
    for path in (Path(save), last_path(save)):
        if not path.exists() or (resume is not None and path.resolve() in resume):
            continue
        metadata = peek_metadata(path)
        run = json.loads(metadata.get("training", "null")) or {}
        saved = json.loads(metadata["config"])
        saved = {**type(config)().to_dict(), **saved}  # fields newer than the file: their defaults
        differ = [f"{k} {saved.get(k)} (now {v})" for k, v in config.to_dict().items() if saved.get(k) != v]
        if json.loads(metadata["vocab"]) != corpus.vocab.chars or run.get("corpus", corpus.name) != corpus.name:
            differ.insert(0, f"corpus {run.get('corpus', 'with another vocabulary')} (now {corpus.name})")
        if differ:
            raise CheckpointError(f"{path} holds a checkpoint of another run ({', '.join(differ[:3])}); add --force "
                                  f"to replace it, or choose a fresh --save name.")


# ---------------------------------------------------------------------------------------------
# Resuming

@dataclass
class Start:
    """Where a resumed run starts: after `step`, with this training state and loop metadata."""
    step: int = 0
    training: dict = None       # the model's get_training_state, None: weights only
    run: dict = None            # the checkpoint's "training" metadata
    note: str = ""              # what the first line says about it


def resume_point(path, vocab, make_config):
    """(checkpoint, config, Start) to resume from `path`, or from its .last sibling when that holds a
    later state of the same run. make_config(saved_config) gives the run's config."""
    from common.checkpoint import load_checkpoint

    chosen = path
    best = load_checkpoint(path, vocab=vocab)
    sibling = last_path(path)
    if sibling.exists() and Path(path).resolve() != sibling.resolve():
        last = load_checkpoint(sibling, vocab=vocab)
        if last.run and best.run and last.run.get("run_id") == best.run.get("run_id") \
                and last.run["step"] > best.run["step"]:
            chosen, best = sibling, last
    config = make_config(best.config)
    ckpt = load_checkpoint(chosen, config=config, vocab=vocab)  # sizes checked, dtype cast
    run = ckpt.run or {}
    step = int(run.get("step", 0))
    exact = bool(ckpt.training) and config.to_dict() == ckpt.config.to_dict() == best.config.to_dict()
    if ckpt.training and not exact:
        changed = [k for k, v in config.to_dict().items() if best.config.to_dict().get(k) != v]
        note = f"; weights only ({', '.join(changed)} changed: the optimizer and the carried state start afresh)"
    elif exact:
        note = ""
    else:
        note = "; weights only (the checkpoint holds no training state)"
    start = Start(step, ckpt.training if exact else None,
                  run if exact else {"step": step, "run_id": run.get("run_id"), "chars_seen": run.get("chars_seen")},
                  f"; resumed from {chosen} after step {step}{note}")
    return ckpt, config, start


# ---------------------------------------------------------------------------------------------
# The loop's parts

def validation_loss(model, batches, max_batches=VAL_BATCHES):
    """The quick validation loss, on the batches of the first half of the validation text (rosetta train
    makes them so: the second half is held out, common/evaluation.py). Streams: common/evaluation.py's
    text_loss over B windows spread over that text, each warmed over the characters before it (a zero state read
    cold scored far above the whole-text figure); windows (target "last"): the first batches, each
    window from zeros and scored at its last position, as in training."""
    from common.evaluation import nll, text_loss

    if batches.carries_state and getattr(batches, "data", None) is not None:
        B, T = batches.batch_size, batches.seq_length
        return text_loss(model, batches.data, streams=B, per_span=max_batches * T, chunk=T).nats
    state, total, n = None, 0.0, min(len(batches), max_batches)
    for k in range(n):
        x, y = batches[k]
        logits, state = model.forward(x, state if batches.carries_state else None)
        total += float(np.mean(nll(np.asarray(logits)[:, -y.shape[1]:], y)))  # (B, T), or (B, 1) for windows
    return total / n


class StopRequests:
    """SIGINT, SIGTERM and SIGHUP ask the loop to stop after the current step (`signum` is set);
    a second one stops at once (KeyboardInterrupt)."""

    def __init__(self):
        self.signum, self.previous = None, {}

    def __enter__(self):
        for name in STOP_SIGNALS:
            if hasattr(signal, name):
                try:
                    self.previous[name] = signal.signal(getattr(signal, name), self.handle)
                except ValueError:  # not the main thread: the signals keep their defaults
                    pass
        return self

    def __exit__(self, *exc):
        for name, handler in self.previous.items():
            signal.signal(getattr(signal, name), handler)

    def handle(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        print(f"\nrosetta: {signal.Signals(signum).name} received; stopping after this step "
              f"(send it again to stop at once)", file=sys.stderr, flush=True)


class Log:
    """The CSV of every step (LOG_COLUMNS); a resumed run keeps the rows up to its start and goes on."""

    def __init__(self, path, start_step, resumed):
        self.path = Path(path)
        rows = read_log(path) or []
        kept = [r for r in rows[1:] if r and int(r[0]) <= start_step] if resumed else []
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(self.path, "w", newline="")
        except OSError as e:
            raise ConfigError(f"cannot write the log {path} ({e.strerror or e}); choose a writable path.") from None
        self.writer = csv.writer(self.file)
        self.writer.writerows([LOG_COLUMNS, *kept])

    def row(self, step, epoch, loss, val_loss, chars_per_s, elapsed):
        self.writer.writerow([step, epoch, repr(loss), "" if val_loss is None else repr(val_loss),
                              f"{chars_per_s:.1f}", f"{elapsed:.3f}"])

    def flush(self):
        self.file.flush()

    def close(self):
        self.file.close()


def duration(seconds):
    seconds = max(0, int(round(seconds)))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


# ---------------------------------------------------------------------------------------------
# The loop

def train(model, framework, corpus, config, batches, val_batches, plan, start=None):
    """Train `model` from start.step to plan.iters; returns the exit status (0 done or out of time,
    128 + signal when stopped by one). A diverging run raises ConfigError (nothing saved)."""
    from common.checkpoint import save_checkpoint
    from common.sampling import sample

    start = start or Start()
    agree = getattr(model, "agree", None)  # --workers (common/parallel.py): the largest value over the workers
    if agree and step_options(config, 0, plan.iters):
        raise ConfigError("--workers does not take --dropout or a learning-rate schedule yet (each worker would need "
                          "its share of the masks); train in one process, or drop those options.")
    run = dict(start.run or {})
    run_id = run.get("run_id") or secrets.token_hex(8)
    if start.training is not None:
        model.set_training_state(start.training)  # the optimizer and the carried state, exactly
    first_loss, best_val = run.get("first_loss"), run.get("best_val")
    best_step = run.get("best_step")
    window_losses = list(run.get("window_losses", []))  # the progress line in progress when saved
    recent_losses = list(run.get("recent_losses", []))  # the last DIVERGE_WINDOW losses
    elapsed_before = float(run.get("elapsed", 0.0))
    sample_window = config.seq_length if config.target == "last" else None
    chars_per_step = config.batch_size * config.seq_length
    # characters read before this invocation: unknown for a checkpoint older than this field
    chars_before = run.get("chars_seen", 0 if start.step == 0 else None)
    corpus_sha256 = hashlib.sha256(corpus.text.encode("utf-8")).hexdigest()  # the text trained on (reduced or not)
    log = Log(plan.log, start.step, start.training is not None or start.step > 0) if plan.log else None
    main = Path(plan.save) if plan.save else None
    last_file = last_path(main) if main and plan.keep == "best" else main

    def state(done, weights_kind):
        epoch, k = divmod(done, len(batches))
        return {"run_id": run_id, "step": done, "epoch": epoch, "batch": k, "iters": plan.iters,
                "chars_seen": None if chars_before is None else chars_before + (done - start.step) * chars_per_step,
                "corpus": corpus.name, "corpus_sha256": corpus_sha256,
                "framework": framework, "keep": plan.keep, "weights": weights_kind,
                "first_loss": first_loss, "best_val": best_val, "best_step": best_step,
                "window_losses": window_losses, "recent_losses": recent_losses, "elapsed": elapsed_before + time.perf_counter() - t0,
                "rng": {"batches": "Windows: numpy.random.default_rng([seed, epoch]); streams: in order",
                        "samples": "seed + step", "seed": config.seed}}

    saved_at = None  # the step whose weights the main checkpoint holds, in this invocation

    def write(path, done, weights_kind):
        nonlocal saved_at
        if path == main:
            saved_at = done
        training = model.get_training_state() if hasattr(model, "get_training_state") else None
        weights = model.get_weights()
        if getattr(model, "writer", True):  # --workers (common/parallel.py): all gather the state, rank 0 writes
            save_checkpoint(path, weights, corpus.vocab, config, framework, training, state(done, weights_kind))

    def save_at_validation(done, val):
        """After validation: the checkpoint policy. Returns what the progress line says."""
        nonlocal best_val, best_step
        if main is None:
            return ""
        improved = best_val is None or val < best_val
        if improved:  # with either policy: every checkpoint records the best so far (rosetta info)
            best_val, best_step = val, done
        if plan.keep == "last":
            write(main, done, "last")
            return f"saved {main}"
        if improved:
            write(main, done, "best")
        write(last_file, done, "last")
        return f"saved {main} (best)" if improved else f"kept {main} (best {best_val:.4f} at step {best_step})"

    def save_on_stop(done):
        """Stopped between validation points: the state to resume from, never over the best weights."""
        if main is None:
            return "nothing saved (no --save)"
        if plan.keep == "best" and best_val is not None and main.exists():
            write(last_file, done, "last")
            return f"the state after step {done} saved to {last_file} ({main} keeps the best weights)"
        write(main, done, "last")
        if plan.keep == "best":
            write(last_file, done, "last")
        return f"the state after step {done} saved to {main}"

    t0 = time.perf_counter()
    deadline = t0 + plan.minutes * 60 if plan.minutes is not None else None
    window_time, done = 0.0, start.step
    width = len(str(plan.iters))
    out_of_time = False
    with StopRequests() as stop, np.errstate(all="ignore"):  # a diverging loss is reported below, not warned
        try:
            for step in range(start.step, plan.iters):
                if agree:  # --workers: a request that reached any worker stops all at the same step
                    stop.signum = agree(stop.signum or 0) or None
                if stop.signum is not None:
                    break
                epoch, k = divmod(step, len(batches))
                x, y = batches.batch(k, epoch)
                if k == 0 or not batches.carries_state or reset_here(config, step):  # a new epoch; windows: every step
                    model.reset_state()
                extra = step_options(config, step, plan.iters)  # dropout masks, scheduled lr: only when on
                t_step = time.perf_counter()
                loss = model.train_step(x, y, **extra)
                seconds = time.perf_counter() - t_step
                window_time += seconds
                window_losses.append(loss)
                recent_losses = [*recent_losses[1 - DIVERGE_WINDOW:], loss]
                first_loss = loss if first_loss is None else first_loss
                diverging = divergence(loss, recent_losses, first_loss)
                if diverging:
                    kept_step = saved_at or (best_step if plan.keep == "best" else None)
                    kept = (f" ({main} keeps the {'best ' if plan.keep == 'best' else ''}weights, of step {kept_step})"
                            if kept_step else " (nothing was saved)" if main else "")
                    raise ConfigError(f"the training loss at step {step + 1} {diverging}, so the run is diverging{kept}; "
                                      f"lower --learning-rate (now {config.learning_rate:g}) or set --clip-norm.")
                done = step + 1
                out_of_time = deadline is not None and time.perf_counter() >= deadline and done < plan.iters
                if agree:  # --workers: the clocks of the workers differ, the decision may not
                    out_of_time = bool(agree(int(out_of_time)))
                last = done == plan.iters or out_of_time  # no step starts after the budget
                validate = last or (plan.val_every and done % plan.val_every == 0)
                val = validation_loss(model, val_batches) if validate else None
                elapsed = elapsed_before + time.perf_counter() - t0
                if log:
                    log.row(done, epoch, loss, val, chars_per_step / max(seconds, 1e-9), elapsed)
                if validate or done % plan.log_every == 0:
                    line = (f"step {done:>{width}}/{plan.iters}  loss {np.mean(window_losses):.4f}"
                            f"  {len(window_losses) * chars_per_step / max(window_time, 1e-9):,.0f} chars/s"
                            f"  elapsed {elapsed:.1f}s  left {time_left(t0, deadline, start.step, done, plan.iters)}")
                    window_losses, window_time = [], 0.0
                    if validate:
                        line += f"  val loss {val:.4f}  {save_at_validation(done, val)}"
                    print(line.rstrip(), flush=True)
                    if log:
                        log.flush()
                if plan.sample_every and (done % plan.sample_every == 0 or (last and done > plan.sample_every)):
                    text = sample(model, corpus.vocab, plan.sample_length, seed=config.seed + done, window=sample_window)
                    print(f"----- sample at step {done}\n{text}\n-----", flush=True)
                if out_of_time:
                    print(f"rosetta: the --minutes {plan.minutes:g} budget ran out after step {done} of {plan.iters}.",
                          flush=True)
                    break
        except KeyboardInterrupt:  # the second request: the weights may be mid-update, so nothing is saved
            signum = stop.signum or signal.SIGINT
            print(f"\nrosetta: stopped at once by a second {signal.Signals(signum).name} during step {done + 1}; "
                  + (f"the last checkpoint written to {main} is intact." if saved_at else "nothing was saved."),
                  file=sys.stderr, flush=True)
            return 128 + signum
        finally:
            if log:
                log.close()
    if stop.signum is not None:
        print(f"rosetta: stopped by {signal.Signals(stop.signum).name} after step {done} of {plan.iters}; "
              f"{save_on_stop(done)}.", file=sys.stderr, flush=True)
        return 128 + stop.signum
    return 0


def reset_here(config, step):
    """config.state_resets: whether the carried state is zeroed before `step`, drawn from (seed, step)
    so that a resumed run resets where the uninterrupted one did. Without it a model sees the zero
    state only at epoch starts and reads badly from it (common/evaluation.py)."""
    return config.state_resets > 0 and np.random.default_rng([config.seed, 0x5E7, step]).random() < config.state_resets


def step_options(config, step, iters):
    """The keywords of train_step at `step`: masks= (common/dropout.py) when config.dropout > 0,
    learning_rate= (common/schedule.py) when the schedule changes the rate; {} by default, so every
    CharLSTM, including the --workers wrappers, keeps docs/DESIGN.md's train_step(x, y)."""
    from common.dropout import dropout_masks
    from common.schedule import learning_rate, scheduled

    extra = {}
    if config.dropout:
        extra["masks"] = dropout_masks(config, step)
    if scheduled(config):
        extra["learning_rate"] = learning_rate(config, step, iters)
    return extra


def time_left(t0, deadline, first, done, iters):
    """The time the remaining steps take at this run's pace, or what is left of the budget if less."""
    now = time.perf_counter()
    left = (now - t0) / max(done - first, 1) * (iters - done)
    if deadline is not None:
        left = min(left, max(deadline - now, 0.0))
    return duration(left)


def divergence(loss, recent_losses, first_loss):
    """What is wrong with a diverging run's loss (not finite, or the mean of the last DIVERGE_WINDOW
    steps above DIVERGE times the run's first loss), or None."""
    if not math.isfinite(loss):
        return f"is {loss}"
    recent = float(np.mean(recent_losses))
    if recent > DIVERGE * first_loss:
        return (f"rose to {recent:.4g} (the mean of the last {len(recent_losses)} steps), more than {DIVERGE:g} "
                f"times the first step's {first_loss:.4g}")
    return None
