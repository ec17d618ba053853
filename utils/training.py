"""The training machinery every stage shares: arguments common to all
scripts, device and distributed set-up, seeding, the optimizer and schedule,
the batch order, crash-safe checkpoints, and the training loop itself.

Reproducibility and resume: the batch order of epoch ``e`` is a permutation
seeded by ``(seed, e)``, and paddle's generator is re-seeded from
``(seed, global_step, rank)`` before every step, so the random state at any
step is a function of the step alone.  A resumed run therefore replays the
remaining steps exactly as an uninterrupted run would.
"""
import argparse
import json
import logging
import math
import os
import random
import shutil
import sys
import time

import numpy as np

from . import output_dir as outdirs
from .modeling import find_file, read_state_dict, write_state_dict
from .safe_pickle import load_tensors
from .errors import UserError

logger = logging.getLogger("bert_suite")

CHECKPOINT_DIR = outdirs.CHECKPOINT_DIR
LATEST = "latest"
# Inputs a run's --output_dir may not be, or contain.
INPUT_FLAGS = ("model_name_or_path", "data_dir", "train_file", "dev_file", "test_file", "aug_file")


# --------------------------------------------------------------------------- arguments
def add_common_args(p: argparse.ArgumentParser, *, lr=2e-5, epochs=3.0, batch_size=32, logging_steps=100,
                    save_steps=500):
    """Flags every training script has (the upstream scripts' names)."""
    p.add_argument("--model_type", default="bert", choices=["bert"], help="model architecture (BERT)")
    p.add_argument("--model_name_or_path", required=True,
                   help="a PaddleNLP model name (downloaded, online) or a local model directory")
    p.add_argument("--output_dir", required=True, help="where checkpoints, models and results are written")
    p.add_argument("--max_seq_length", type=int, default=None,
                   help="default: 128, or the model's position table if shorter")
    p.add_argument("--batch_size", type=int, default=batch_size, help="batch size per device")
    p.add_argument("--learning_rate", type=float, default=lr)
    p.add_argument("--weight_decay", type=float, default=0.0)
    p.add_argument("--adam_epsilon", type=float, default=1e-8)
    p.add_argument("--max_grad_norm", type=float, default=1.0, help="global-norm gradient clipping (0 = off)")
    p.add_argument("--num_train_epochs", type=float, default=epochs)
    p.add_argument("--max_steps", type=int, default=-1, help="if > 0: total training steps (overrides epochs)")
    p.add_argument("--warmup_steps", type=int, default=0, help="linear warm-up steps (overrides proportion)")
    p.add_argument("--warmup_proportion", type=float, default=0.0, help="warm-up as a fraction of all steps")
    p.add_argument("--logging_steps", type=int, default=logging_steps)
    p.add_argument("--save_steps", type=int, default=save_steps, help="evaluate and checkpoint every N steps")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--device", default=None, choices=["cpu", "gpu", "xpu"], help="default: gpu if available")
    p.add_argument("--n_gpu", type=int, default=None, help="older spelling: 0 = cpu, >= 1 = gpu")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --output_dir")
    p.add_argument("--overwrite_output_dir", action="store_true",
                   help="start afresh even if --output_dir holds a checkpoint")
    p.add_argument("--num_workers", type=int, default=0, help="(accepted for compatibility; data is in memory)")
    # Test hook: simulate a crash (os._exit) right after the checkpoint of this step.
    p.add_argument("--debug_exit_after_step", type=int, default=-1, help=argparse.SUPPRESS)
    # ... or right after the evaluation of this step, before its checkpoint.
    p.add_argument("--debug_exit_before_checkpoint", type=int, default=-1, help=argparse.SUPPRESS)
    return p


def check_common_args(args):
    args.max_seq_length = check_max_seq_length(args.model_name_or_path, args.max_seq_length, default=128)
    for name in ("batch_size", "max_seq_length", "logging_steps", "save_steps"):
        if getattr(args, name) <= 0:
            raise UserError(f"--{name} must be positive, got {getattr(args, name)}")
    if args.learning_rate <= 0:
        raise UserError(f"--learning_rate must be positive, got {args.learning_rate}")
    if not 0 <= args.warmup_proportion < 1:
        raise UserError(f"--warmup_proportion must be in [0, 1), got {args.warmup_proportion}")
    if args.num_train_epochs <= 0 and args.max_steps <= 0:
        raise UserError("--num_train_epochs must be positive (or give --max_steps)")
    sources = [(f"--{name}", getattr(args, name, None)) for name in INPUT_FLAGS]
    if is_master():
        outdirs.check_run_dir(args, sources)
    else:
        outdirs.check_writable(args.output_dir, "--output_dir")


def check_max_seq_length(model_dir, max_seq_length, flag="--max_seq_length", default=None):
    """The model's position table must cover --max_seq_length (read from
    its config.json; a model name is checked when it loads).  With
    ``default`` (the flag was not given, ``max_seq_length`` is None), returns
    ``default`` capped at the table's length."""
    from .modeling import raw_config
    cfg = raw_config(model_dir) if os.path.isdir(model_dir) else None
    limit = (cfg or {}).get("max_position_embeddings")
    limit = limit if isinstance(limit, int) and limit > 0 else None
    if max_seq_length is None:
        return default if limit is None else min(default, limit)
    if limit is not None and max_seq_length > limit:
        raise UserError(f"{flag} {max_seq_length} is longer than the model's {limit} position embeddings "
                        f"({model_dir}/config.json max_position_embeddings); use {flag} {limit} or less")
    return max_seq_length


def start_run(args):
    """Claim --output_dir for this run (lock; --overwrite_output_dir clears
    the previous run's records) and record the arguments.  Call it after
    everything that can fail on bad input, right before training."""
    if is_master():
        outdirs.claim_run_dir(args)
        path = os.path.join(args.output_dir, "args.json")
        if not (args.resume and os.path.isfile(path)):     # a resumed run keeps the arguments it started with
            write_json_atomic(path, vars(args))
    else:
        os.makedirs(args.output_dir, exist_ok=True)


def end_run(args):
    """Release --output_dir (the lock of this process only)."""
    outdirs.release(os.path.join(args.output_dir, outdirs.LOCK))


def run_state(args, step, total_steps, finished=False):
    """What a model directory saved during training records of its run
    (``finished`` turns true when the run ends: :func:`finish_run`)."""
    return {"output_dir": os.path.abspath(args.output_dir), "step": step, "total_steps": total_steps,
            "finished": finished}


def finish_run(args, model_dirs):
    """Mark the model directories a finished run saved during training."""
    from .modeling import mark_run_finished
    for d in model_dirs:
        path = os.path.join(args.output_dir, d)
        if os.path.isdir(path):
            mark_run_finished(path)


# --------------------------------------------------------------------------- device, ranks, seeds, logging
def rank_and_world():
    return int(os.environ.get("PADDLE_TRAINER_ID", 0)), int(os.environ.get("PADDLE_TRAINERS_NUM", 1))


def is_master():
    return rank_and_world()[0] == 0


def setup_logging(verbose=True):
    level = logging.INFO if (verbose and is_master()) else logging.WARNING
    root = logging.getLogger("bert_suite")
    if not root.handlers:
        h = logging.StreamHandler(sys.stdout)
        h.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s %(message)s", "%H:%M:%S"))
        root.addHandler(h)
    root.setLevel(level)
    root.propagate = False
    from .compat import quiet_libraries
    quiet_libraries()


def setup_device(args):
    """Resolve --device / --n_gpu, set paddle's device, start the parallel
    environment when launched with several processes."""
    import paddle
    device = args.device
    if device is None and args.n_gpu is not None:
        device = "cpu" if args.n_gpu == 0 else "gpu"
    if device is None:
        device = "gpu" if paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0 else "cpu"
    if device == "gpu" and not paddle.is_compiled_with_cuda():
        raise UserError("--device gpu: this paddle build has no CUDA support (install paddlepaddle-gpu) "
                        "or use --device cpu")
    if device == "xpu" and not paddle.is_compiled_with_xpu():
        raise UserError("--device xpu: this paddle build has no XPU support")
    paddle.set_device(device)
    args.device = device
    if rank_and_world()[1] > 1:
        paddle.distributed.init_parallel_env()
    return device


def set_seed(seed):
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    reseed(seed)


def reseed(seed):
    """Seed paddle's generator and the suite's CPU dropout masks
    (:func:`utils.elastic.dropout`)."""
    import paddle
    from .elastic_forward import seed_dropout
    paddle.seed(seed)
    seed_dropout(seed)


def step_seed(seed, step):
    """Seed of paddle's generator for one training step (dropout)."""
    rank = rank_and_world()[0]
    return (seed * 1_000_003 + step * 7_919 + rank * 104_729) % (2 ** 31)


# --------------------------------------------------------------------------- batches
def epoch_batches(n, batch_size, epoch, seed, shuffle=True):
    """Index batches of one epoch for this rank: a seeded permutation, padded
    by wrapping to a multiple of the world size, split round-robin by rank."""
    rank, world = rank_and_world()
    order = np.random.RandomState((seed + 1000 * epoch) % (2 ** 32)).permutation(n) if shuffle else np.arange(n)
    if world > 1:
        total = int(math.ceil(n / world)) * world
        order = np.concatenate([order, order[: total - n]])[rank::world]
    return [order[i:i + batch_size].tolist() for i in range(0, len(order), batch_size)]


def eval_batches(n, batch_size):
    return [list(range(i, min(n, i + batch_size))) for i in range(0, n, batch_size)]


def num_steps(args, n_train):
    per_epoch = len(epoch_batches(n_train, args.batch_size, 0, 0, shuffle=False))
    if per_epoch == 0:
        raise UserError("the training data is empty")
    total = args.max_steps if args.max_steps > 0 else int(math.ceil(per_epoch * args.num_train_epochs))
    return per_epoch, total


# --------------------------------------------------------------------------- optimizer
def build_optimizer(args, model, total_steps, parameters=None):
    """AdamW without decay on biases and norms, linear warm-up and decay,
    global-norm clipping with --max_grad_norm."""
    import paddle
    from paddlenlp.transformers import LinearDecayWithWarmup
    warmup = args.warmup_steps if args.warmup_steps > 0 else int(args.warmup_proportion * total_steps)
    scheduler = LinearDecayWithWarmup(args.learning_rate, total_steps, warmup)
    named = list(model.named_parameters())
    decay = {p.name for n, p in named if not any(t in n for t in ("bias", "norm"))}
    clip = paddle.nn.ClipGradByGlobalNorm(args.max_grad_norm) if args.max_grad_norm > 0 else None
    optimizer = paddle.optimizer.AdamW(
        learning_rate=scheduler, parameters=parameters or [p for _, p in named], epsilon=args.adam_epsilon,
        weight_decay=args.weight_decay, apply_decay_param_fun=lambda name: name in decay, grad_clip=clip)
    return optimizer, scheduler


# --------------------------------------------------------------------------- files
def make_dirs(path):
    """``os.makedirs(path)``; returns the directories it created (deepest
    first), for :func:`remove_empty_dirs` when the run fails."""
    made = []
    p = os.path.abspath(path)
    while p and not os.path.isdir(p):
        made.append(p)
        p = os.path.dirname(p)
    os.makedirs(path, exist_ok=True)
    return made


def remove_empty_dirs(made):
    """Undo :func:`make_dirs` as far as the directories are still empty."""
    for d in sorted(made, key=len, reverse=True):      # children before their parents
        if os.path.isdir(d) and not os.listdir(d):
            os.rmdir(d)


# --------------------------------------------------------------------------- checkpoints
def write_json_atomic(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=False, default=float)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_checkpoint(output_dir, step, model, optimizer, scheduler, state):
    """Write ``checkpoints/step-N`` completely, then point ``latest`` at it
    with an atomic rename, then delete older checkpoints.  A crash at any
    moment leaves ``latest`` naming a complete checkpoint."""
    import paddle
    root = os.path.join(output_dir, CHECKPOINT_DIR)
    os.makedirs(root, exist_ok=True)
    name = f"step-{step}"
    tmp = os.path.join(root, name + ".tmp")
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    net = model._layers if isinstance(model, paddle.DataParallel) else model
    write_state_dict(net.state_dict(), os.path.join(tmp, "model.safetensors"))
    # paddle.save: read back through utils.safe_pickle (arrays and dicts only)
    paddle.save(optimizer.state_dict(), os.path.join(tmp, "optimizer.pdopt"))
    write_json_atomic(os.path.join(tmp, "state.json"), dict(state, step=step, scheduler=scheduler.state_dict()))
    final = os.path.join(root, name)
    if os.path.exists(final):
        shutil.rmtree(final)
    os.replace(tmp, final)
    with open(os.path.join(root, LATEST + ".tmp"), "w") as f:
        f.write(name)
        f.flush()
        os.fsync(f.fileno())
    os.replace(os.path.join(root, LATEST + ".tmp"), os.path.join(root, LATEST))
    for old in os.listdir(root):
        if old.startswith("step-") and old != name:
            shutil.rmtree(os.path.join(root, old), ignore_errors=True)


def check_same_tensors(saved, own, ckpt):
    """A checkpoint must hold exactly this model's tensors, in its shapes
    (paddle's set_state_dict would skip the others with a mere warning)."""
    missing, extra = sorted(set(own) - set(saved)), sorted(set(saved) - set(own))
    shapes = [(k, list(saved[k].shape), list(own[k].shape)) for k in sorted(set(own) & set(saved))
              if list(saved[k].shape) != list(own[k].shape)]
    problems = ([f"{len(missing)} tensors of the model are not in it (first: {missing[0]})"] if missing else []) + \
               ([f"{len(extra)} of its tensors are not in the model (first: {extra[0]})"] if extra else []) + \
               ([f"{shapes[0][0]} is {shapes[0][1]} there but {shapes[0][2]} here"
                 + (f" (and {len(shapes) - 1} more)" if len(shapes) > 1 else "")] if shapes else [])
    if problems:
        raise UserError(f"--resume: checkpoint {ckpt} is of another model or configuration: " + "; ".join(problems)
                        + " (resume with the flags of the interrupted run, or start over with --overwrite_output_dir)")


def load_checkpoint(output_dir, model, optimizer, scheduler):
    """Restore the latest checkpoint; returns its state dict (None if none)."""
    import paddle
    root = os.path.join(output_dir, CHECKPOINT_DIR)
    latest = os.path.join(root, LATEST)
    if not os.path.isfile(latest):
        return None
    with open(latest) as f:
        ckpt = os.path.join(root, f.read().strip())
    try:
        with open(os.path.join(ckpt, "state.json")) as f:
            state = json.load(f)
        net = model._layers if isinstance(model, paddle.DataParallel) else model
        weights = find_file(ckpt, ("model.safetensors", "model.pdparams"))   # .pdparams: older checkpoints
        if weights is None:
            raise OSError(f"no model weights in {ckpt}")
        saved = read_state_dict(weights)
        check_same_tensors(saved, net.state_dict(), ckpt)
        net.set_state_dict(saved)
        optimizer.set_state_dict(load_tensors(os.path.join(ckpt, "optimizer.pdopt")))
    except (OSError, ValueError) as e:
        raise UserError(f"--resume: checkpoint {ckpt} is unreadable ({e})")
    scheduler.set_state_dict(state.pop("scheduler"))
    return state


def append_result(out_dir, record):
    """Append one evaluation record to out_dir/results.json (rewritten atomically)."""
    path = os.path.join(out_dir, "results.json")
    records = []
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            records = json.load(f)
    records.append(record)
    write_json_atomic(path, records)


def truncate_results(out_dir, step):
    """Drop the records of evaluations after ``step`` (a run killed between
    its evaluation and its checkpoint replays them when it resumes), so that
    a resumed run's results.json equals the uninterrupted run's."""
    path = os.path.join(out_dir, "results.json")
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as f:
        records = json.load(f)
    keep = [r for r in records if r.get("step", 0) <= step]
    if len(keep) == len(records):
        return
    logger.warning("--resume: dropping %d evaluation record(s) after step %d from %s (they are evaluated again)",
                   len(records) - len(keep), step, path)
    if keep:
        write_json_atomic(path, keep)
    else:
        os.remove(path)


# --------------------------------------------------------------------------- the loop
class Stage:
    """What a script plugs into :func:`train`.  ``step(batch, step)`` runs the
    forward and backward passes of one batch and returns the loss to log;
    ``evaluate(step)`` evaluates (rank 0 only) and saves what it wants;
    ``state()``/``load_state()`` carry the stage's own bookkeeping (best
    scores) through checkpoints.  :func:`train` sets ``total_steps``."""
    total_steps = None

    def step(self, batch, step):
        raise NotImplementedError

    def evaluate(self, step, epoch):
        raise NotImplementedError

    def state(self):
        return {}

    def load_state(self, state):
        pass


def train(args, stage, model, optimizer, scheduler, train_features, collate, total_steps, per_epoch):
    """Run ``total_steps`` optimizer steps: log every --logging_steps,
    evaluate and checkpoint every --save_steps and at the end, resume from
    the latest checkpoint with --resume."""
    import paddle
    from tqdm import tqdm
    master = is_master()
    global_step = 0
    stage.total_steps = total_steps
    if args.resume:
        state = load_checkpoint(args.output_dir, model, optimizer, scheduler)
        if state is None:
            logger.warning("--resume: no checkpoint in %s, starting from the beginning", args.output_dir)
        else:
            global_step = state["step"]
            stage.load_state(state.get("stage", {}))
            logger.info("resumed from step %d", global_step)
        if master:
            truncate_results(args.output_dir, global_step)
    rank, world = rank_and_world()
    logger.info("***** Running training *****")
    logger.info("  examples = %d, epochs = %s, batch size per device = %d, devices = %d (total batch %d)",
                len(train_features), args.num_train_epochs if args.max_steps <= 0 else "-",
                args.batch_size, world, args.batch_size * world)
    logger.info("  steps per epoch = %d, total steps = %d, warm-up steps = %d", per_epoch, total_steps,
                args.warmup_steps if args.warmup_steps > 0 else int(args.warmup_proportion * total_steps))
    bar = tqdm(total=total_steps, initial=global_step, desc="train", disable=not master, dynamic_ncols=True,
               mininterval=1.0)
    model.train()
    t0, losses = time.time(), []
    epoch = global_step // per_epoch
    while global_step < total_steps:
        batches = epoch_batches(len(train_features), args.batch_size, epoch, args.seed)
        for b_idx in range(global_step - epoch * per_epoch, len(batches)):
            if global_step >= total_steps:
                break
            reseed(step_seed(args.seed, global_step))
            batch = collate([train_features[i] for i in batches[b_idx]])
            loss = stage.step(batch, global_step)
            optimizer.step()
            scheduler.step()
            optimizer.clear_grad()
            global_step += 1
            losses.append(float(loss))
            bar.update(1)
            if global_step % args.logging_steps == 0 and master:
                lr = optimizer.get_lr()
                bar.write(f"step {global_step}/{total_steps} epoch {epoch} loss {np.mean(losses):.5f} "
                          f"lr {lr:.3e} speed {len(losses) / (time.time() - t0):.2f} step/s")
                t0, losses = time.time(), []
            if global_step % args.save_steps == 0 or global_step == total_steps:
                if master:
                    stage.evaluate(global_step, epoch)
                    if global_step == args.debug_exit_before_checkpoint:
                        os._exit(3)         # test hook: killed between the evaluation and its checkpoint
                    save_checkpoint(args.output_dir, global_step, model, optimizer, scheduler,
                                    {"epoch": epoch, "stage": stage.state()})
                    model.train()
                if world > 1:
                    paddle.distributed.barrier()
                if global_step == args.debug_exit_after_step:
                    bar.close()
                    sys.stdout.flush()
                    os._exit(3)
        epoch += 1
    bar.close()
    return global_step
