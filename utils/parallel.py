"""Ranks, device, seeds, logging and the batch order of one process.

Reproducibility and resume: the batch order of epoch ``e`` is a permutation
seeded by ``(seed, e)``, and paddle's generator is re-seeded from
``(seed, global_step, rank)`` before every step (:func:`step_seed`), so the
random state at any step is a function of the step alone.  A resumed run
therefore replays the remaining steps exactly as an uninterrupted run would.
"""
import logging
import math
import os
import random

import numpy as np

from .errors import UserError


# --------------------------------------------------------------------------- ranks, device, logging
def rank_and_world():
    return int(os.environ.get("PADDLE_TRAINER_ID", 0)), int(os.environ.get("PADDLE_TRAINERS_NUM", 1))


def is_master():
    return rank_and_world()[0] == 0


def setup_logging(verbose=True):
    """The suite's ``bert_suite`` logger on stdout (INFO on rank 0, WARNING
    elsewhere), and paddleslim / paddlenlp chatter silenced."""
    from .log import setup_logging as log_to_stdout
    log_to_stdout(logging.INFO if (verbose and is_master()) else logging.WARNING)
    from .compat import quiet_libraries
    quiet_libraries()


def setup_device(device=None, n_gpu=None):
    """Resolve --device / --n_gpu (None: gpu if available), set paddle's
    device, start the parallel environment when launched with several
    processes.  Returns the device."""
    import paddle
    if device is None and n_gpu is not None:
        device = "cpu" if n_gpu == 0 else "gpu"
    if device is None:
        device = "gpu" if paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0 else "cpu"
    if device == "gpu" and not paddle.is_compiled_with_cuda():
        raise UserError("--device gpu: this paddle build has no CUDA support (install paddlepaddle-gpu) "
                        "or use --device cpu")
    if device == "xpu" and not paddle.is_compiled_with_xpu():
        raise UserError("--device xpu: this paddle build has no XPU support")
    paddle.set_device(device)
    if rank_and_world()[1] > 1:
        paddle.distributed.init_parallel_env()
    return device


def setup_process(device=None, n_gpu=None, seed=42):
    """What a training script does first: logging, device (and the parallel
    environment), seeds.  Returns the device."""
    setup_logging()
    device = setup_device(device, n_gpu)
    set_seed(seed)
    return device


# --------------------------------------------------------------------------- seeds
def set_seed(seed):
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    reseed(seed)


def reseed(seed):
    """Seed paddle's generator and the suite's CPU dropout masks
    (:func:`utils.elastic_forward.dropout`)."""
    import paddle
    from .elastic_forward import seed_dropout
    paddle.seed(seed)
    seed_dropout(seed)


def step_seed(seed, step):
    """Seed of paddle's generator for one training step (dropout)."""
    rank = rank_and_world()[0]
    return (seed * 1_000_003 + step * 7_919 + rank * 104_729) % (2 ** 31)


# --------------------------------------------------------------------------- batches
GROUP_BATCHES = 50   # --group_by_length sorts windows of this many batches


def epoch_batches(n, batch_size, epoch, seed, shuffle=True, lengths=None):
    """Index batches of one epoch for this rank: a seeded permutation, padded
    by wrapping to a multiple of the world size, split round-robin by rank.
    ``lengths`` (one per example; --group_by_length): each window of
    :data:`GROUP_BATCHES` batches of that order is sorted by length before it
    is cut into batches, and the batches are then shuffled (seeded), so a
    batch holds examples of like length (less padding) and the epoch's
    batches, their number and the examples they cover stay the same."""
    rank, world = rank_and_world()
    order = np.random.RandomState((seed + 1000 * epoch) % (2 ** 32)).permutation(n) if shuffle else np.arange(n)
    if world > 1:
        total = int(math.ceil(n / world)) * world
        order = np.concatenate([order, order[: total - n]])[rank::world]
    if lengths is not None and shuffle:
        lengths = np.asarray(lengths)
        window = GROUP_BATCHES * batch_size
        chunks = [order[i:i + window] for i in range(0, len(order), window)]
        order = np.concatenate([c[np.argsort(-lengths[c], kind="stable")] for c in chunks]) if chunks else order
        batches = [order[i:i + batch_size].tolist() for i in range(0, len(order), batch_size)]
        # the last (possibly short) batch stays last; the others in a seeded order
        full = len(order) // batch_size
        perm = np.random.RandomState((seed + 1000 * epoch + 1) % (2 ** 32)).permutation(full)
        return [batches[i] for i in perm] + batches[full:]
    return [order[i:i + batch_size].tolist() for i in range(0, len(order), batch_size)]


def eval_batches(n, batch_size, lengths=None):
    """Index batches over ``n`` examples in order, or, given their
    ``lengths``, over the examples sorted by length (stable), so that each
    padded batch computes few padding positions; the caller puts the
    outputs back in example order."""
    order = np.argsort(np.asarray(lengths), kind="stable") if lengths is not None else np.arange(n)
    return [order[i:i + batch_size].tolist() for i in range(0, n, batch_size)]


def num_steps(n_train, batch_size, max_steps=-1, num_train_epochs=1.0):
    """(optimizer steps per epoch, total steps): ``max_steps`` if > 0, else
    ``num_train_epochs`` epochs of ``n_train`` examples."""
    per_epoch = len(epoch_batches(n_train, batch_size, 0, 0, shuffle=False))
    if per_epoch == 0:
        raise UserError("the training data is empty")
    total = max_steps if max_steps > 0 else int(math.ceil(per_epoch * num_train_epochs))
    return per_epoch, total
