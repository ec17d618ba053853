"""The training loop every stage shares: the optimizer and its schedule,
the :class:`Stage` a script plugs in, and :func:`train`, which runs the
steps, logs, evaluates, checkpoints and resumes.

The pieces it stands on have their own modules: the common flags
(:mod:`utils.train_args`), ranks / device / seeds / batch order
(:mod:`utils.parallel`), checkpoints (:mod:`utils.checkpoint`) and the run's
records in --output_dir (:mod:`utils.runs`).
"""
import logging
import os
import sys
import time

import numpy as np

from .checkpoint import load_checkpoint, save_checkpoint
from .parallel import epoch_batches, is_master, rank_and_world, reseed, step_seed
from .runs import truncate_results

logger = logging.getLogger("bert_suite")


# --------------------------------------------------------------------------- optimizer
def warmup_of(total_steps, warmup_steps=0, warmup_proportion=0.0):
    """Warm-up steps: ``warmup_steps`` if > 0, else a proportion of all steps."""
    return warmup_steps if warmup_steps > 0 else int(warmup_proportion * total_steps)


def build_optimizer(model, total_steps, learning_rate, *, warmup_steps=0, warmup_proportion=0.0,
                    weight_decay=0.0, adam_epsilon=1e-8, max_grad_norm=1.0, parameters=None):
    """AdamW without decay on biases and norms, linear warm-up and decay,
    global-norm clipping at ``max_grad_norm`` (0 = off)."""
    import paddle
    from paddlenlp.transformers import LinearDecayWithWarmup
    scheduler = LinearDecayWithWarmup(learning_rate, total_steps,
                                      warmup_of(total_steps, warmup_steps, warmup_proportion))
    named = list(model.named_parameters())
    decay = {p.name for n, p in named if not any(t in n for t in ("bias", "norm"))}
    clip = paddle.nn.ClipGradByGlobalNorm(max_grad_norm) if max_grad_norm > 0 else None
    optimizer = paddle.optimizer.AdamW(
        learning_rate=scheduler, parameters=parameters or [p for _, p in named], epsilon=adam_epsilon,
        weight_decay=weight_decay, apply_decay_param_fun=lambda name: name in decay, grad_clip=clip)
    return optimizer, scheduler


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


def _resume(output_dir, stage, model, optimizer, scheduler):
    """The step to start from: the latest checkpoint's (0 if none)."""
    state = load_checkpoint(output_dir, model, optimizer, scheduler)
    step = 0
    if state is None:
        logger.warning("--resume: no checkpoint in %s, starting from the beginning", output_dir)
    else:
        step = state["step"]
        stage.load_state(state.get("stage", {}))
        logger.info("resumed from step %d", step)
    if is_master():
        truncate_results(output_dir, step)
    return step


def _log_plan(n_train, batch_size, per_epoch, total_steps, num_train_epochs, warmup):
    world = rank_and_world()[1]
    logger.info("***** Running training *****")
    logger.info("  examples = %d, epochs = %s, batch size per device = %d, devices = %d (total batch %d)",
                n_train, "-" if num_train_epochs is None else num_train_epochs, batch_size, world, batch_size * world)
    logger.info("  steps per epoch = %d, total steps = %d, warm-up steps = %d", per_epoch, total_steps, warmup)


def _evaluate_and_checkpoint(output_dir, step, epoch, stage, model, optimizer, scheduler, exit_before_checkpoint):
    """Rank 0 evaluates and checkpoints; every rank waits for it."""
    import paddle
    if is_master():
        stage.evaluate(step, epoch)
        if step == exit_before_checkpoint:
            os._exit(3)         # test hook: killed between the evaluation and its checkpoint
        save_checkpoint(output_dir, step, model, optimizer, scheduler, {"epoch": epoch, "stage": stage.state()})
        model.train()
    if rank_and_world()[1] > 1:
        paddle.distributed.barrier()


def train(stage, model, optimizer, scheduler, train_features, collate, total_steps, per_epoch, *, output_dir,
          batch_size, seed=42, logging_steps=100, save_steps=500, resume=False, num_train_epochs=None,
          warmup_steps=0, warmup_proportion=0.0, group_by_length=False, debug_exit_after_step=-1,
          debug_exit_before_checkpoint=-1):
    """Run ``total_steps`` optimizer steps: log every ``logging_steps``,
    evaluate and checkpoint every ``save_steps`` and at the end, continue
    from the latest checkpoint with ``resume``.  ``num_train_epochs`` and the
    warm-up are only logged; ``group_by_length``: batches of like-length
    examples (:func:`utils.parallel.epoch_batches`); ``debug_exit_*`` are test hooks (a crash right
    after that step's checkpoint / before it).  Returns the last step."""
    from tqdm import tqdm
    stage.total_steps = total_steps
    global_step = _resume(output_dir, stage, model, optimizer, scheduler) if resume else 0
    _log_plan(len(train_features), batch_size, per_epoch, total_steps, num_train_epochs,
              warmup_of(total_steps, warmup_steps, warmup_proportion))
    bar = tqdm(total=total_steps, initial=global_step, desc="train", disable=not is_master(), dynamic_ncols=True,
               mininterval=1.0)
    lengths = [len(f["input_ids"]) for f in train_features] if group_by_length else None
    model.train()
    t0, losses = time.time(), []
    epoch = global_step // per_epoch
    while global_step < total_steps:
        batches = epoch_batches(len(train_features), batch_size, epoch, seed, lengths=lengths)
        for b_idx in range(global_step - epoch * per_epoch, min(len(batches), total_steps - epoch * per_epoch)):
            reseed(step_seed(seed, global_step))
            losses.append(float(stage.step(collate([train_features[i] for i in batches[b_idx]]), global_step)))
            optimizer.step()
            scheduler.step()
            optimizer.clear_grad()
            global_step += 1
            bar.update(1)
            if global_step % logging_steps == 0 and is_master():
                bar.write(f"step {global_step}/{total_steps} epoch {epoch} loss {np.mean(losses):.5f} "
                          f"lr {optimizer.get_lr():.3e} speed {len(losses) / (time.time() - t0):.2f} step/s")
                t0, losses = time.time(), []
            if global_step % save_steps == 0 or global_step == total_steps:
                _evaluate_and_checkpoint(output_dir, global_step, epoch, stage, model, optimizer, scheduler,
                                         debug_exit_before_checkpoint)
                if global_step == debug_exit_after_step:
                    bar.close()
                    sys.stdout.flush()
                    os._exit(3)
        epoch += 1
    bar.close()
    return global_step
