"""`rosetta train --workers N`: data-parallel training through each framework's own engine.

The B text streams of every batch are split into N shards of B/N streams; each worker trains its
shard with its own carried state, the gradients are averaged with the framework's engine every step,
and every worker takes the same update, the one a single process training all B streams takes (the
mean over B x T positions is the mean of the workers' means when the shards are equal).

    numpy   N processes, MPI through mpi4py: `mpiexec -n N python -m common.cli train ...`
    torch   N processes, DistributedDataParallel over gloo, started here with torchrun's
            environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT)
    keras   one process: keras.distribution.DataParallel over N jax devices (the jax backend only)

The command line checks everything (flags, corpus, checkpoints) in the process the user started,
then `launch` starts the workers with the same arguments. Every worker runs the one training loop
(common/training.py) on the whole batch and trains its rows; the model's `agree` makes every
decision the loop takes alone (a stop request, the time budget) the same on all workers, and only
the `writer` (rank 0) saves checkpoints, writes the log and prints; the others print nothing.

This file imports no framework: the workers' code is <framework>_impl/parallel.py, by module name.
"""

import importlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

from common.errors import ConfigError

WORKERS = "ROSETTA_WORKERS"  # set in every worker started by launch: the number of workers
PROCESSES = ("numpy", "torch")  # frameworks whose workers are processes; keras' are devices of one process
RANK_VARIABLES = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK")  # torchrun, MPICH, Open MPI
GRACE_SECONDS = 10  # after one worker fails, the others get this long to stop before they are killed


def check_workers(workers, config, framework, backend=None):
    """Refuse, in one sentence, a number of workers that cannot share the batch."""
    if workers == 1:
        return
    if config.batch_size % workers:
        raise ConfigError(f"--workers {workers} must divide --batch-size {config.batch_size} (each worker trains "
                          f"an equal share of the streams); choose a batch size that is a multiple of {workers}.")
    if framework == "keras" and backend != "jax":
        raise ConfigError(f"--workers {workers} with Keras runs only on the jax backend (keras.distribution); "
                          f"the {backend} backend has none this model can use: add --backend jax.")


def in_worker():
    """True in a process started as a worker (by launch, torchrun or mpiexec)."""
    return WORKERS in os.environ or any(name in os.environ for name in RANK_VARIABLES)


def rank():
    """This process's rank among the workers; 0 outside them and in keras' single process."""
    for name in RANK_VARIABLES:
        if name in os.environ:
            return int(os.environ[name])
    return 0


def prepare(framework, workers):
    """Before the framework is imported: keras on jax gets N host devices; a worker other than rank 0
    sends its standard output to /dev/null (rank 0 prints the progress for all)."""
    if framework == "keras":
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={workers}".strip()
    elif rank() != 0:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def data_parallel(cls, framework, config, weights, path, workers):
    """The framework's data-parallel CharLSTM (<framework>_impl/parallel.py) for this worker."""
    module = importlib.import_module(f"{framework}_impl.parallel")
    return module.data_parallel(cls, config, weights, path, workers)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(framework, workers, argv):
    """(command, environment) that start the workers of a run with the same arguments."""
    env = dict(os.environ, **{WORKERS: str(workers)})
    if framework == "numpy":
        mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
        mpiexec = mpiexec if os.path.exists(mpiexec) else shutil.which("mpiexec")
        if mpiexec is None:
            raise ConfigError("numpy --workers needs MPI: install the mpich and mpi4py wheels pinned in "
                              "requirements.txt (pip install -r requirements.txt).")
        return [mpiexec, "-n", str(workers), sys.executable, "-m", "common.cli", *argv], [env]
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WORLD_SIZE=str(workers))
    envs = [dict(env, RANK=str(r), LOCAL_RANK=str(r), LOCAL_WORLD_SIZE=str(workers)) for r in range(workers)]
    return [sys.executable, "-m", "common.cli", *argv], envs


def launch(framework, workers, argv):
    """Start the workers, pass them SIGINT, SIGTERM and SIGHUP, and return rank 0's exit status."""
    cmd, envs = command(framework, workers, argv)
    # A session of their own: a Ctrl-C in the terminal reaches them once, from here, not twice
    processes = [subprocess.Popen(cmd, env=env, start_new_session=True) for env in envs]

    def forward(signum, frame):
        for p in processes:
            if p.poll() is None:
                os.killpg(p.pid, signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        failed_at = None
        while any(p.poll() is None for p in processes):
            time.sleep(0.1)
            if failed_at is None and any(p.poll() for p in processes):
                failed_at = time.monotonic()
            if failed_at is not None and time.monotonic() - failed_at > GRACE_SECONDS:
                # a worker that failed alone leaves the others waiting in a collective: end them
                for p in processes:
                    if p.poll() is None:
                        os.killpg(p.pid, signal.SIGKILL)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    statuses = [p.wait() for p in processes]
    return statuses[0] if statuses[0] else max(statuses)
