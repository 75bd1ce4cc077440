"""The `rosetta` command: train a model in any framework, sample from it, inspect a checkpoint.

    rosetta train --framework torch --corpus tinyshakespeare --iters 500 --save m.safetensors
    rosetta sample m.safetensors --framework numpy --length 300 --temperature 0.8 --prime "ROMEO:"
    rosetta info m.safetensors
    rosetta import m.keras --vocab vocab.json --out m.safetensors   # a model trained by plain Keras/PyTorch code
    rosetta plot run1.csv run2.csv --out loss.png

Checkpoints are the interchange .safetensors files of common/checkpoint.py, so a model trained
in one framework samples in any other. A mistake in the input (a flag, a corpus, a checkpoint,
a prime) prints `rosetta: error: <one sentence>` and exits with status 2; Ctrl-C, SIGTERM or SIGHUP
during training stops after the current step, saves the state (atomically) and exits with status
128 + the signal (130, 143, 129). The loop itself is common/training.py.

This file imports no framework: the chosen one is imported by common.frameworks.make_model,
after common/runtime.py has set the threads (--threads, or the cores that are free), passive
waiting and the allocator (--malloc) that it reads at import.
"""

import argparse
import os
import sys
from pathlib import Path

from common import runtime

runtime.set_passive_waiting()  # before numpy's OpenBLAS loads (below) and reads OPENBLAS_THREAD_TIMEOUT

from common.batches import make_batches, split  # noqa: E402 (after the waiting policy)
from common.config import add_config_args, config_from_args  # noqa: E402
from common.errors import ConfigError, RosettaError  # noqa: E402
from common.evaluation import add_protocol_args, val_half  # noqa: E402
from common.frameworks import (DEFAULT_KERAS_BACKEND, FRAMEWORKS, KERAS_BACKENDS, THREAD_VARIABLES, VERBOSE,  # noqa: E402
                               check_backend, check_device, check_framework, make_model, model_class, use_backend)


# ---------------------------------------------------------------------------------------------
# Argument types: a bad value is an argparse error (status 2) that says what was expected

def positive_int(text):
    value = int_value(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return value


def count(text):
    value = int_value(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (off) or a positive whole number, got {text!r}")
    return value


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number greater than 0, got {text!r}")
    return value


def int_value(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None


def add_model_args(parser):
    parser.add_argument("--framework", type=str, default="numpy",
                        help=f"implementation to run: {', '.join(FRAMEWORKS)} (default numpy)")
    parser.add_argument("--path", type=str, default=None,
                        help="layer (torch.nn.LSTM, keras.layers.LSTM) or cell (the gate equations written out; "
                             "numpy has only cell); default: cell for numpy, layer for torch and keras")
    parser.add_argument("--backend", type=str, default=DEFAULT_KERAS_BACKEND,
                        help=f"Keras 3 backend for --framework keras: {', '.join(KERAS_BACKENDS)} "
                             f"(default {DEFAULT_KERAS_BACKEND})")
    parser.add_argument("--threads", type=positive_int, default=None, metavar="N",
                        help="CPU threads for the framework and BLAS (default: the cores other processes leave "
                             "free, measured at start-up; common/runtime.py)")
    parser.add_argument("--malloc", choices=runtime.MALLOC_CHOICES, default="steady",
                        help="steady: glibc keeps the memory a step frees for the next step (mmap threshold "
                             "32 MiB, trim threshold 1 GiB, set with mallopt at start-up); default: glibc's own "
                             "thresholds (default steady)")
    parser.add_argument("--device", type=str, default="cpu",
                        help="where torch puts the model, its state and the batches: cpu, cuda, cuda:1 (torch only: "
                             "Keras and JAX place work as their backends do, numpy runs on the CPU) (default cpu)")
    add_verbose_arg(parser)


def add_verbose_arg(parser):
    parser.add_argument("--verbose", action="store_true", default=False,
                        help=f"show what the frameworks print while they load (TensorFlow's start-up lines, "
                             f"warnings), hidden by default; or set {VERBOSE}=1")


def build_parser(preset_defaults=None):
    """The parser; preset_defaults (common.presets) become the defaults of `rosetta train`."""
    parser = argparse.ArgumentParser(
        prog="rosetta", description="Train and sample a character-level LSTM in numpy, torch or keras.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{train,sample,eval,info,export,import,plot}")

    train = commands.add_parser("train", help="train a model on a corpus and save checkpoints",
                                description="Train a character-level LSTM; the checkpoint is written at every "
                                            "validation point and at the end.")
    add_model_args(train)
    train.add_argument("--corpus", type=str, default="tinyshakespeare", metavar="NAME_OR_FILE",
                       help="tinyshakespeare, quijote, or the path of a UTF-8 text file (default tinyshakespeare)")
    train.add_argument("--reduced", action="store_true", default=False,
                       help="map the text to the reduced alphabet: lower case and a few punctuation marks")
    train.add_argument("--iters", type=positive_int, default=500, metavar="N",
                       help="training steps in all, counting those of a resumed run (default 500)")
    train.add_argument("--minutes", type=positive_float, default=None, metavar="M",
                       help="time budget: stop after M minutes if --iters is not reached first, then validate "
                            "and save as at the end (default: none)")
    train.add_argument("--save", type=str, default=None, metavar="FILE",
                       help="checkpoint file to write (.safetensors), a new file or one of this run's; "
                            "default: nothing is saved")
    train.add_argument("--keep", choices=("best", "last"), default="best",
                       help="best: --save keeps the weights of the best validation loss and FILE.last.safetensors "
                            "the last state; last: --save holds the last state (default best)")
    train.add_argument("--force", action="store_true", default=False,
                       help="let --save replace a checkpoint of another run (another corpus or config)")
    train.add_argument("--resume", type=str, default=None, metavar="FILE",
                       help="continue the run saved in this checkpoint (its .last state when that is later): "
                            "exactly, with the same config and framework; otherwise from its weights")
    train.add_argument("--log", type=str, default=None, metavar="FILE",
                       help="write a CSV of every step and validation point (step, epoch, loss, val_loss, "
                            "chars_per_s, elapsed); `rosetta plot FILE` draws it")
    train.add_argument("--val-every", type=count, default=100, metavar="N",
                       help="validation loss and checkpoint every this many steps, and at the end; 0: only at the end (default 100)")
    train.add_argument("--log-every", type=positive_int, default=10, metavar="N",
                       help="print a progress line every this many steps (default 10)")
    train.add_argument("--sample-every", type=count, default=200, metavar="N",
                       help="print a generated sample every this many steps; 0: never (default 200)")
    train.add_argument("--sample-length", type=positive_int, default=200, metavar="N",
                       help="characters per generated sample (default 200)")
    train.add_argument("--workers", type=positive_int, default=1, metavar="N",
                       help="data-parallel training: split the B streams over N workers that average their "
                            "gradients every step (numpy: MPI processes, torch: DDP processes, keras: jax devices); "
                            "N must divide --batch-size (default 1)")
    train.add_argument("--preset", type=str, default=None, metavar="NAME",
                       help="a seed post's model and training settings as defaults that other options override: "
                            "horas, bogunowicz or wang (README: The seed posts' models)")
    add_config_args(train, skip=("vocab_size",))
    if preset_defaults:
        train.set_defaults(**preset_defaults)

    sample = commands.add_parser("sample", help="generate text from a checkpoint",
                                 description="Generate text from an interchange checkpoint in any framework.")
    sample.add_argument("checkpoint", type=str, help="a .safetensors checkpoint written by rosetta train")
    add_model_args(sample)
    sample.add_argument("--length", type=count, default=300, metavar="N", help="characters to generate after the prime (default 300)")
    sample.add_argument("--temperature", type=float, default=1.0, metavar="T",
                        help="divides the logits: below 1 safer, above 1 wilder (default 1.0)")
    sample.add_argument("--top-k", type=positive_int, default=None, metavar="K",
                        help="draw only from the K likeliest characters (default: all)")
    sample.add_argument("--prime", type=str, default=None, metavar="TEXT",
                        help="text to start from (default: a newline, or the first character of the vocabulary)")
    sample.add_argument("--seed", type=count, default=None, metavar="S", help="random seed (default: the checkpoint's config.seed)")

    evaluate = commands.add_parser("eval", help="validation loss of a checkpoint, the state carried or nanoGPT's way",
                                   description="The mean cross-entropy of the validation text in nats and bits per "
                                               "character (common/evaluation.py): every character with the state "
                                               "carried (the default), or nanoGPT's estimate_loss with --protocol "
                                               "blocks; --half second is the held-out half no choice was made on.")
    evaluate.add_argument("checkpoint", type=str, help="a .safetensors checkpoint written by rosetta train")
    add_model_args(evaluate)
    evaluate.add_argument("--corpus", type=str, default=None, metavar="NAME_OR_FILE",
                          help="the corpus whose validation text is read (default: the checkpoint's run's)")
    evaluate.add_argument("--streams", type=positive_int, default=32, metavar="S",
                          help="spans read side by side, each warmed over the 256 characters before it; "
                               "1: the text as one stream from a zero state (default 32)")
    add_protocol_args(evaluate)

    export = commands.add_parser("export", help="write a checkpoint as a .keras, .pt2 or .onnx file",
                                 description="Write a checkpoint as a file that plain Keras (keras.saving.load_model), "
                                             "PyTorch (torch.export.load) or onnxruntime code loads without this "
                                             "project (README: Exports).")
    export.add_argument("checkpoint", type=str, help="a .safetensors checkpoint written by rosetta train")
    export.add_argument("--to", type=str, required=True, metavar="FORMAT",
                        help="keras (.keras), torch (.pt2, torch.export) or onnx (.onnx)")
    export.add_argument("output", type=str, help="the file to write; its suffix must match --to")
    export.add_argument("--force", action="store_true", default=False, help="replace the output if it exists")
    add_verbose_arg(export)

    # --- rosetta import (issue 26; common/importing.py) ---
    imported = commands.add_parser("import", help="a character LSTM trained by plain Keras or PyTorch code, as a checkpoint",
                                   description="Convert a .keras/.h5 model, a torch.save(state_dict) file or an .onnx "
                                               "file (Embedding? -> LSTM+ -> Dense head) into a checkpoint (README: "
                                               "Bring your own LSTM).")
    imported.add_argument("source", type=str, help="the model file: .keras, .h5, .pt/.pth/.bin (a state_dict) or .onnx")
    imported.add_argument("--vocab", type=str, required=True, metavar="FILE_OR_CORPUS",
                          help="the model's characters in index order: a .json list, a text file of distinct characters, "
                               "or a corpus (a built-in name or a text file) whose sorted characters they are")
    imported.add_argument("--out", type=str, required=True, metavar="FILE", help="the .safetensors checkpoint to write")
    imported.add_argument("--map", type=str, action="append", default=None, metavar="NAME=TARGET",
                          help="a state_dict tensor's role when its name does not tell: embedding.weight, "
                               "lstm.weight_ih_l{k} (weight_hh, bias_ih, bias_hh), head.weight, head.bias or ignore")
    imported.add_argument("--force", action="store_true", default=False, help="replace the output if it exists")
    # --- end rosetta import ---

    plot = commands.add_parser("plot", help="draw the loss curves of training logs",
                               description="Draw the training and validation loss of one or more --log CSV files.")
    plot.add_argument("logs", type=str, nargs="+", metavar="FILE", help="CSV logs written by rosetta train --log")
    plot.add_argument("--out", type=str, default=None, metavar="PNG",
                      help="the PNG to write (default: the first log's name with .png)")
    plot.add_argument("--title", type=str, default="Training loss", help="the plot's title")

    info = commands.add_parser("info", help="show what a checkpoint holds",
                               description="Print the framework, config, vocabulary and tensors of a checkpoint.")
    info.add_argument("checkpoint", type=str, help="a .safetensors checkpoint")
    return parser


# ---------------------------------------------------------------------------------------------
# Threads, and the model of a framework

def set_threads(threads):
    """Thread-count variables for a framework not yet imported (torch, TensorFlow read them at import)."""
    if threads is not None:
        for name in THREAD_VARIABLES:
            os.environ[name] = str(threads)


def limit_loaded_pools(threads):
    """numpy's BLAS (and any OpenMP pool already loaded) was started before --threads was read: threadpoolctl."""
    if threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads)


def build_model(args, config, weights, workers=1):
    framework, path = check_framework(args.framework, args.path)
    if framework == "keras":
        use_backend(args.backend)  # KERAS_BACKEND, before keras is imported
    set_threads(args.threads)
    if workers > 1:  # common/parallel.py: this worker's share, through the framework's engine
        from common import parallel

        parallel.prepare(framework, workers)
        model = parallel.data_parallel(model_class(framework, path), framework, config, weights, path, workers)
    else:
        options = {"device": args.device} if args.device != "cpu" else {}  # check_device: torch's only
        model = make_model(framework, config, weights, path=path, **options)  # the framework is imported here
    limit_loaded_pools(args.threads)
    return model, framework, path


# ---------------------------------------------------------------------------------------------
# rosetta train

def train(args):
    """Check everything a run needs, build the model, and hand over to common.training.train."""
    from common.corpus import load_corpus
    from common.training import (Plan, Start, check_memory, check_same_run, check_save_path, last_path,
                                 resume_point, train as training_loop, warn_threads)
    from common.weights import init_weights

    check_framework(args.framework, args.path)
    if args.framework == "keras":
        check_backend(args.backend)  # an unknown backend is refused before any slow work
    config_from_args(args)  # a bad --hidden-size etc. is refused before the corpus is read
    check_save_path(args.save, corpus=args.corpus, log=args.log)  # before anything is read or trained
    warn_threads(getattr(args, "threads_given", args.threads))
    corpus = load_corpus(args.corpus, reduced=args.reduced)
    if args.resume:
        ckpt, config, start = resume_point(args.resume, corpus.vocab, lambda saved: config_from_args(args, **saved.to_dict()))
        if start.step >= args.iters:
            raise ConfigError(f"{args.resume} is already at step {start.step}; ask for more with --iters above "
                              f"{start.step} (--iters counts every step of the run).")
    else:
        config, start = config_from_args(args, vocab_size=len(corpus.vocab)), Start()
    check_memory(config)  # before the weights or the model are allocated
    resumed = {Path(p).resolve() for p in (args.resume, last_path(args.resume))} if args.resume else None
    check_same_run(args.save, corpus, config, force=args.force, resume=resumed)
    weights = ckpt.weights if args.resume else init_weights(config)
    train_data, val_data = split(corpus.data)
    train_batches = make_batches(train_data, config, name="training")  # streams, or windows for target "last"
    val_batches = make_batches(val_half(val_data, "first"), config, name="first half of the validation")  # the second: held out

    workers = getattr(args, "workers", 1)
    if workers > 1:
        from common import parallel

        parallel.check_workers(workers, config, args.framework, check_backend(args.backend))
        if args.framework in parallel.PROCESSES and not parallel.in_worker():  # checked here, trained there
            return parallel.launch(args.framework, workers, args.argv)
    model, framework, path = build_model(args, config, weights, workers)
    print(f"{framework}/{path} on {corpus.name}: {len(train_data):,} training and {len(val_data):,} validation "
          f"characters ({len(val_data) - 1:,} next-character targets; validation reads the first "
          f"{len(val_half(val_data, 'first')):,}, the second half is held out), V={config.vocab_size}, "
          f"{config.num_layers} layer(s) of {config.hidden_size}, "
          f"B={config.batch_size} T={config.seq_length}"
          + (f" target last (windows {config.window_stride} apart)" if config.target == "last" else "")
          + (f" {config.recurrent_activation}" if config.recurrent_activation != "sigmoid" else "")
          + f", {config.optimizer} lr {config.learning_rate:g}, "
          f"{config.dtype}; {len(train_batches)} batches per epoch"
          + (f", {workers} workers of {config.batch_size // workers} streams" if workers > 1 else "")
          + start.note, flush=True)
    writer = getattr(model, "writer", True)  # --workers: rank 0 logs and samples; every rank runs the loop
    plan = Plan(iters=args.iters, val_every=args.val_every, log_every=args.log_every,
                sample_every=args.sample_every if writer else 0, sample_length=args.sample_length,
                minutes=args.minutes, save=args.save, keep=args.keep, log=args.log if writer else None)
    return training_loop(model, framework, corpus, config, train_batches, val_batches, plan, start)


def plot_command(args):
    from common.plotting import plot_logs

    out = plot_logs(args.logs, args.out, title=args.title)
    print(f"wrote {out}", flush=True)
    return 0


# ---------------------------------------------------------------------------------------------
# rosetta sample, rosetta info

def sample_command(args):
    from common.checkpoint import load_checkpoint
    from common.sampling import check_sampling_args, stream

    check_framework(args.framework, args.path)
    if args.framework == "keras":
        check_backend(args.backend)  # an unknown backend is refused before any slow work
    ckpt = load_checkpoint(args.checkpoint)
    check_sampling_args(ckpt.vocab, args.length, args.temperature, args.top_k)  # before a slow framework import
    if args.prime is not None:
        ckpt.vocab.encode(args.prime, what="the prime")
    model, _, _ = build_model(args, ckpt.config, ckpt.weights)
    seed = ckpt.config.seed if args.seed is None else args.seed
    window = ckpt.config.seq_length if ckpt.config.target == "last" else None  # a many-to-one model reads windows
    try:  # each character is printed as it is drawn, so a long sample starts at once
        for text in stream(model, ckpt.vocab, args.length, args.temperature, args.top_k, args.prime, seed, window):
            sys.stdout.write(text)
            sys.stdout.flush()
    except KeyboardInterrupt:  # Ctrl-C ends the text where it stands
        print(flush=True)
        return 130
    print(flush=True)
    return 0


def eval_command(args):
    from common.checkpoint import load_checkpoint
    from common.corpus import load_corpus
    from common.evaluation import check_options, describe, score

    check_framework(args.framework, args.path)
    check_options(args.protocol, args.half, args.block, args.blocks)
    ckpt = load_checkpoint(args.checkpoint)
    name = args.corpus or (ckpt.run or {}).get("corpus")
    if name is None:
        raise ConfigError(f"{args.checkpoint} does not say which corpus it was trained on; give --corpus.")
    corpus = load_corpus(name)
    load_checkpoint(args.checkpoint, vocab=corpus.vocab)  # a corpus of another vocabulary is refused
    model, framework, path = build_model(args, ckpt.config, ckpt.weights)
    val_data = split(corpus.data)[1]
    result = score(model, val_data, args.protocol, args.half, streams=args.streams, block=args.block, seed=args.seed,
                   blocks=args.blocks)
    print(f"{args.checkpoint}: validation loss {describe(result, args.half, val_data, args.seed, args.blocks)} "
          f"of {corpus.name} ({framework}/{path})", flush=True)
    return 0


def export_command(args):
    from common.export import export

    output = export(args.checkpoint, args.to, args.output, force=args.force, announce=lambda line: print(line, flush=True))
    print(f"wrote {output} (--to {args.to}); README: Exports shows how to load and sample it", flush=True)
    return 0


def import_command(args):  # rosetta import (issue 26)
    from common.importing import import_model, parse_map

    out, config, notes = import_model(args.source, args.vocab, args.out, parse_map(args.map), force=args.force)
    print(f"wrote {out}: V={config.vocab_size}, {config.num_layers} layer(s) of {config.hidden_size}, {config.dtype}"
          + "".join(f"; {note}" for note in notes), flush=True)
    return 0


def info_command(args):
    from common.checkpoint import load_checkpoint

    ckpt = load_checkpoint(args.checkpoint)
    c = ckpt.config
    total = sum(w.size for w in ckpt.weights.values())
    print(f"checkpoint  {args.checkpoint} ({os.path.getsize(args.checkpoint):,} bytes)")
    print(f"written by  {ckpt.framework}")
    for label, text in progress(ckpt):
        print(f"{label:<11} {text}")
    print(f"vocabulary  {len(ckpt.vocab)} characters: {ckpt.vocab.chars!r}")
    print("config      " + ", ".join(f"{k}={v}" for k, v in c.to_dict().items()))
    print(f"tensors     {len(ckpt.weights)}, {total:,} parameters, {c.dtype}")
    width = max(len(name) for name in ckpt.weights)
    for name, w in ckpt.weights.items():
        print(f"  {name:<{width}}  {str(tuple(w.shape)):<12}  {w.size:>10,}")
    return 0


def progress(ckpt):
    """[(label, text)]: the training progress a checkpoint records (its "training" metadata, written
    by common/training.py); what a checkpoint of an older version lacks reads "not recorded"."""
    run = {k: v for k, v in (ckpt.run or {}).items() if v is not None}
    if not run:
        steps = "not recorded (the checkpoint holds no training metadata)"
    else:
        steps = f"step {run['step']:,}" if "step" in run else "step not recorded"
        steps += f" of {run['iters']:,}" if "iters" in run else ""
        steps += f" (epoch {run['epoch']}, batch {run.get('batch')})" if "epoch" in run else ""
        steps += f", {run['chars_seen']:,} characters read" if "chars_seen" in run else ", characters read not recorded"
        steps += f", {run['elapsed']:,.1f} s of training" if "elapsed" in run else ""
    best = "not recorded"
    if "best_val" in run:
        best = f"{run['best_val']:.4f} nats per character at step {run.get('best_step')}"
        best += "; these weights are that step's" if run.get("weights") == "best" else ""
    corpus = run.get("corpus", "not recorded")
    if "corpus" in run:
        corpus += f", sha256 {run.get('corpus_sha256', 'not recorded')}"
    slots = sorted({name.split("/")[0].removeprefix("optim.") for name in ckpt.training if name.startswith("optim.")})
    state = (f"{ckpt.config.optimizer} ({', '.join(slots) or 'no slots'}) and the carried LSTM state: "
             f"--resume continues the run exactly" if ckpt.training else
             "none (weights only): --resume starts the optimizer and the LSTM state afresh")
    return [("training", steps), ("best val", best), ("corpus", corpus), ("train state", state)]


COMMANDS = {"train": train, "sample": sample_command, "eval": eval_command, "info": info_command, "export": export_command,
            "import": import_command, "plot": plot_command}


def main(argv=None):
    """Run the command line; returns the exit status (0, 2 for a user error, 128 + signal when stopped by one)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, "preset", None) is not None:  # parse again with the preset's values as defaults
            from common.presets import preset

            args = build_parser(preset(args.preset)).parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)  # --workers starts its workers with them
        if getattr(args, "verbose", False):
            os.environ[VERBOSE] = "1"  # common.frameworks.quiet shows the frameworks' output; --workers' workers inherit it
        if args.command in ("train", "sample", "eval"):  # threads, waiting and allocator, before a framework loads
            args.threads_given = args.threads
            check_device(args.framework, args.device)  # before anything slow
            args.threads = runtime.prepare(args.threads, args.malloc)
        return COMMANDS[args.command](args)
    except RosettaError as e:
        print(f"rosetta: error: {e}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print("\nrosetta: interrupted; nothing was written.", file=sys.stderr, flush=True)
        return 130
    except BrokenPipeError:  # `rosetta sample ... | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
