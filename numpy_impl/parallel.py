"""Data-parallel numpy: one process per worker, MPI through mpi4py (the launcher in common/parallel.py
runs `mpiexec -n N python -m common.cli train ... --workers N`).

Each worker trains its B/N of the B text streams (rows rank*B/N .. (rank+1)*B/N of every batch) with
its own carried state. After the hand-written backward, one Allreduce sums the gradients of all
workers; divided by N it is the gradient of the mean over all B x T positions (with equal shards the
mean of the workers' means), so every worker takes the step one process training all B streams takes.

    model = data_parallel(CharLSTM, config, weights, path="cell", workers=2)   # in each MPI rank
    loss = model.train_step(x, y)     # x, y: the whole (B, T) batch; the loss of all B streams
"""

import atexit
import json
import os
import time

import numpy as np
from mpi4py import MPI

from common.errors import ConfigError


class DataParallel:
    """Mixed in before a numpy CharLSTM (model.py or fast.py): its self.config holds this worker's
    batch size B/N; train_step takes the whole batch, and backward averages over the workers."""

    comm = MPI.COMM_WORLD

    @property
    def rank(self):
        return self.comm.rank

    @property
    def writer(self):
        """Only rank 0 writes checkpoints and logs (every rank holds the same weights)."""
        return self.comm.rank == 0

    def shard(self, a):
        """This worker's rows of a (B, ...) array: (B/N, ...)."""
        b = self.config.batch_size  # B/N
        return np.asarray(a)[self.comm.rank * b:(self.comm.rank + 1) * b]

    def backward(self, *cache):
        grads = super().backward(*cache)
        flat = np.concatenate([g.ravel() for g in grads.values()])  # (P,) one message, not one per tensor
        t = time.perf_counter()
        self.comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)  # the line data parallelism is about
        self.allreduce_seconds += time.perf_counter() - t
        flat /= self.comm.size  # the sum of the workers' mean gradients / N: the mean over B x T
        offset = 0
        for g in grads.values():
            g[...] = flat[offset:offset + g.size].reshape(g.shape)
            offset += g.size
        return grads

    def train_step(self, x, y):
        """One update of the weights, identical on every worker; returns the mean loss over all B streams."""
        loss = super().train_step(self.shard(x), self.shard(y))  # this worker's streams, its own carried state
        self.steps += 1
        return self.comm.allreduce(loss, op=MPI.SUM) / self.comm.size

    def agree(self, value):
        """The largest value over the workers: every worker takes the same decision (stop, out of time)."""
        return self.comm.allreduce(value, op=MPI.MAX)

    def get_training_state(self):
        """The training state of the whole run: the carried state of every worker's streams, in order."""
        tensors = super().get_training_state()
        for name in [n for n in tensors if n.startswith("state.")]:
            tensors[name] = np.concatenate(self.comm.allgather(tensors[name]), axis=0)  # (B, H)
        return tensors

    def set_training_state(self, tensors):
        """From the training state of the whole run (B streams): this worker's rows."""
        super().set_training_state({n: self.shard(t) if n.startswith("state.") else t for n, t in tensors.items()})


def data_parallel(cls, config, weights, path, workers):
    """A `cls` (a numpy CharLSTM class) for this MPI rank, training B/N streams of each batch."""
    size = MPI.COMM_WORLD.size
    if size != workers:
        raise ConfigError(f"--workers {workers} but MPI started {size} process(es); start numpy workers with "
                          f"`rosetta train --workers {workers}` (it runs mpiexec) or `mpiexec -n {workers}`.")
    worker = type(f"DataParallel{cls.__name__}", (DataParallel, cls), {})
    model = worker(config.replace(batch_size=config.batch_size // workers), weights, path=path)
    model.steps, model.allreduce_seconds = 0, 0.0
    report_allreduce(model)
    return model


def report_allreduce(model):
    """With ROSETTA_ALLREDUCE_LOG=FILE (benchmarks/scaling.py), rank 0 writes its all-reduce time at exit."""
    path = os.environ.get("ROSETTA_ALLREDUCE_LOG")
    if path and model.writer:
        def write():
            with open(path, "w") as f:
                json.dump({"steps": model.steps, "allreduce_seconds": model.allreduce_seconds}, f)
        atexit.register(write)
