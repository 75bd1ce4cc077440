"""Data-parallel PyTorch: DistributedDataParallel over gloo, one process per worker (common/parallel.py
starts them with torchrun's environment: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT; `torchrun
--nproc-per-node N -m common.cli train ... --workers N` works too).

Each worker trains its B/N of the B text streams with its own carried state. DDP needs an nn.Module
whose forward it runs, and the lesson's CharLSTM.train_step differentiates its own loss: Replica below
is a small nn.Module around the CharLSTM whose forward is that loss, and the CharLSTM built here
(DataParallelCharLSTM) sends its loss through DDP whenever autograd records. In loss.backward() DDP
all-reduces the gradients bucket by bucket and divides by N: the gradient of the mean over all
B x T positions. CharLSTM.train_step is then unchanged: clipping and the optimizer see that averaged
gradient on every worker, so every worker takes the step one process takes.

gloo on CPU: the workers keep their tensors on the CPU (the default device), and nccl reduces only
GPU tensors.

    model = data_parallel(Interface, config, weights, path="layer", workers=2)   # in each process
    loss = model.train_step(x, y)     # x, y: the whole (B, T) batch; the loss of all B streams
"""

import atexit
import json
import os
import time

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from common.errors import ConfigError
from .model import CharLSTM


class Replica(nn.Module):
    """A CharLSTM (shared, not copied) whose forward(x, y, state) is its loss: what DDP runs."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, y, state):
        return CharLSTM.loss(self.model, x, y, state)  # (loss, new_state)


class DataParallelCharLSTM(CharLSTM):
    """The lesson's CharLSTM whose loss, when autograd records, goes through DistributedDataParallel."""

    def loss(self, x, y, state, masks=None):  # masks: never with --workers (common/training.py refuses dropout)
        if torch.is_grad_enabled():  # a loss to differentiate: through DDP, which averages in backward
            return self.ddp[0](x, y, state)
        return super().loss(x, y, state)


class DataParallel:
    """Mixed in before torch_impl/plumbing.py's Interface: its self.config holds this worker's batch
    size B/N; train_step takes the whole batch, and the loss it differentiates goes through DDP."""

    Module = DataParallelCharLSTM

    @property
    def rank(self):
        return dist.get_rank()

    @property
    def writer(self):
        """Only rank 0 writes checkpoints and logs (every rank holds the same weights)."""
        return dist.get_rank() == 0

    def shard(self, a):
        """This worker's rows of a (B, ...) array: (B/N, ...)."""
        b = self.config.batch_size  # B/N
        return np.asarray(a)[dist.get_rank() * b:(dist.get_rank() + 1) * b]

    def train_step(self, x, y):
        """One update of the weights, identical on every worker; returns the mean loss over all B streams."""
        loss = super().train_step(self.shard(x), self.shard(y))  # this worker's streams, its own carried state
        self.steps += 1
        total = torch.tensor(loss, dtype=torch.float64)
        dist.all_reduce(total)
        return total.item() / dist.get_world_size()

    def agree(self, value):
        """The largest value over the workers: every worker takes the same decision (stop, out of time)."""
        t = torch.tensor(int(value), dtype=torch.int64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t.item()

    def get_training_state(self):
        """The training state of the whole run: the carried state of every worker's streams, in order."""
        tensors = super().get_training_state()
        for name in [n for n in tensors if n.startswith("state.")]:
            parts = [torch.empty_like(torch.as_tensor(tensors[name])) for _ in range(dist.get_world_size())]
            dist.all_gather(parts, torch.as_tensor(tensors[name]))
            tensors[name] = torch.cat(parts).numpy()  # (B, H)
        return tensors

    def set_training_state(self, tensors):
        """From the training state of the whole run (B streams): this worker's rows."""
        super().set_training_state({n: self.shard(t) if n.startswith("state.") else t for n, t in tensors.items()})


def timed_allreduce(model, bucket):
    """A DDP communication hook: the default average, but blocking, so its time is what the step waits."""
    t = time.perf_counter()
    buffer = bucket.buffer().div_(dist.get_world_size())
    dist.all_reduce(buffer)
    model.allreduce_seconds += time.perf_counter() - t
    future = torch.futures.Future()
    future.set_result(buffer)
    return future


def data_parallel(cls, config, weights, path, workers):
    """A `cls` (torch_impl/plumbing.py's Interface) for this process, training B/N streams of each batch."""
    if not dist.is_initialized():
        dist.init_process_group("gloo", init_method="env://")  # RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT
    if dist.get_world_size() != workers:
        raise ConfigError(f"--workers {workers} but {dist.get_world_size()} torch process(es) were started; "
                          f"give torchrun --nproc-per-node {workers}, or let `rosetta train --workers {workers}` start them.")
    worker = type(f"DataParallel{cls.__name__}", (DataParallel, cls), {})
    model = worker(config.replace(batch_size=config.batch_size // workers), weights, path=path)
    model.steps, model.allreduce_seconds = 0, 0.0
    model.ddp = DistributedDataParallel(Replica(model.model), broadcast_buffers=False)
    model.model.ddp = [model.ddp]  # in a list: not a submodule, and no cycle nn.Module would walk
    path = os.environ.get("ROSETTA_ALLREDUCE_LOG")
    if path:  # benchmarks/scaling.py: time the all-reduce (blocking, so the figure is the wait)
        model.ddp.register_comm_hook(model, timed_allreduce)
        if model.writer:
            atexit.register(lambda: json.dump({"steps": model.steps, "allreduce_seconds": model.allreduce_seconds},
                                              open(path, "w")))
    return model
