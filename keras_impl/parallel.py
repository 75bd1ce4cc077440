"""Data-parallel Keras 3: the backend's own mechanism, in one process.

JAX: keras.distribution.DataParallel over N devices (on a CPU, N host devices made by
XLA_FLAGS=--xla_force_host_platform_device_count=N, which common/parallel.py sets before jax is
imported). Keras lays each batch out along its first axis over the devices (B/N streams each) and
replicates the weights; XLA partitions the compiled train step (SPMD) and inserts the all-reduce of
the gradients itself, so the update is the one of a single device. The carried state lives in
replicated non-trainable variables of the whole batch (keras_impl/plumbing.py's CarriedState, a layer of the model), so each device keeps
its streams' rows by the same layout.

TensorFlow: tf.distribute.MirroredStrategy runs this model but does not split its batches. Keras 3's
train_on_batch (keras/src/backend/tensorflow/trainer.py) hands (x, y) to strategy.run as they are;
only fit's epoch iterator calls experimental_distribute_dataset. So under the strategy's scope on two
logical CPU devices every replica trains on all B streams: the losses and weights are bit for bit
those of one device, with the work done twice. fit cannot carry the state between calls the way
train_on_batch does here (docs/keras-state.md), so --workers refuses tensorflow in one sentence.
torch: Keras 3's distribution API has no torch implementation (keras/src/backend/torch has no
distribution_lib). For torch, use --framework torch, which has DistributedDataParallel.

    model = data_parallel(CharLSTM, config, weights, path="layer", workers=2)
    loss = model.train_step(x, y)     # x, y: the whole (B, T) batch
"""

import keras

from common.errors import ConfigError


def data_parallel(cls, config, weights, path, workers):
    """A `cls` (a keras CharLSTM class) whose training is spread over `workers` devices."""
    backend = keras.backend.backend()
    if backend != "jax":
        raise ConfigError(f"--workers {workers} with Keras runs only on the jax backend here: Keras 3 has no "
                          f"distribution for torch, and under tf.distribute.MirroredStrategy train_on_batch does not "
                          f"split the batch; use --backend jax (or --framework torch or numpy).")
    devices = keras.distribution.list_devices()
    if len(devices) < workers:
        raise ConfigError(f"--workers {workers} but jax sees {len(devices)} device(s); XLA_FLAGS must hold "
                          f"--xla_force_host_platform_device_count={workers} before jax is imported.")
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices[:workers]))
    return cls(config, weights, path=path)


def time_allreduce(num_elements, workers, reps=50):
    """Seconds for the all-reduce XLA runs in a data-parallel step: a (workers, P) array sharded one
    row per device, summed over its first axis into a replicated (P,) (what the partitioner inserts
    for the gradients of P weights); the median of `reps` calls after a compiled warm-up."""
    import time

    import jax
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    mesh = Mesh(np.array(jax.devices()[:workers]), ("batch",))
    grads = jax.device_put(np.ones((workers, num_elements), np.float32), NamedSharding(mesh, PartitionSpec("batch")))
    allreduce = jax.jit(lambda g: g.sum(axis=0), out_shardings=NamedSharding(mesh, PartitionSpec()))
    allreduce(grads).block_until_ready()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        allreduce(grads).block_until_ready()
        times.append(time.perf_counter() - t)
    return float(np.median(times))
