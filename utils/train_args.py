"""The flags every training script shares, their defaults, and their checks
(the upstream scripts' names).  A stage's parse_args() calls
:func:`add_common_args` and :func:`check_common_args`; later code reads the
parsed namespace and never writes to it."""
import argparse
import os

from . import output_dir as outdirs
from .errors import UserError
from .parallel import is_master

# Inputs a run's --output_dir may not be, or contain.
INPUT_FLAGS = ("model_name_or_path", "data_dir", "train_file", "dev_file", "test_file", "aug_file")
DEFAULT_MAX_SEQ_LENGTH = 128


def add_common_args(p: argparse.ArgumentParser, *, lr=2e-5, epochs=3.0, batch_size=32, logging_steps=100,
                    save_steps=500):
    """Flags every training script has (the upstream scripts' names)."""
    p.add_argument("--model_type", default="bert", choices=["bert"], help="model architecture (BERT)")
    p.add_argument("--model_name_or_path", required=True,
                   help="a PaddleNLP model name (downloaded, online) or a local model directory")
    p.add_argument("--output_dir", required=True, help="where checkpoints, models and results are written")
    p.add_argument("--max_seq_length", type=int, default=None,
                   help=f"default: {DEFAULT_MAX_SEQ_LENGTH}, or the model's position table if shorter")
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
    p.add_argument("--group_by_length", action="store_true",
                   help="batch training examples of like length (seeded; each batch is padded to its longest "
                        "example, so less padding means faster steps): for data of mixed lengths")
    p.add_argument("--num_workers", type=int, default=0, help="(accepted for compatibility; data is in memory)")
    # Test hook: simulate a crash (os._exit) right after the checkpoint of this step.
    p.add_argument("--debug_exit_after_step", type=int, default=-1, help=argparse.SUPPRESS)
    # ... or right after the evaluation of this step, before its checkpoint.
    p.add_argument("--debug_exit_before_checkpoint", type=int, default=-1, help=argparse.SUPPRESS)
    return p


def check_common_args(args):
    """Check the common flags and --output_dir (no side effects); returns
    the --max_seq_length to use (the flag, or the default capped at the
    model's position table), for parse_args to store."""
    max_seq_length = check_max_seq_length(args.model_name_or_path, args.max_seq_length,
                                          default=DEFAULT_MAX_SEQ_LENGTH)
    values = dict(batch_size=args.batch_size, max_seq_length=max_seq_length, logging_steps=args.logging_steps,
                  save_steps=args.save_steps)
    for name, value in values.items():
        if value <= 0:
            raise UserError(f"--{name} must be positive, got {value}")
    if args.learning_rate <= 0:
        raise UserError(f"--learning_rate must be positive, got {args.learning_rate}")
    if not 0 <= args.warmup_proportion < 1:
        raise UserError(f"--warmup_proportion must be in [0, 1), got {args.warmup_proportion}")
    if args.num_train_epochs <= 0 and args.max_steps <= 0:
        raise UserError("--num_train_epochs must be positive (or give --max_steps)")
    sources = [(f"--{name}", getattr(args, name, None)) for name in INPUT_FLAGS]
    if is_master():
        outdirs.check_run_dir(args.output_dir, sources, args.resume, args.overwrite_output_dir)
    else:
        outdirs.check_writable(args.output_dir, "--output_dir")
    return max_seq_length


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


def optimizer_settings(args):
    """The keyword arguments of :func:`utils.training.build_optimizer` that
    the common flags give."""
    return dict(learning_rate=args.learning_rate, warmup_steps=args.warmup_steps,
                warmup_proportion=args.warmup_proportion, weight_decay=args.weight_decay,
                adam_epsilon=args.adam_epsilon, max_grad_norm=args.max_grad_norm)


def step_settings(args):
    """The keyword arguments of :func:`utils.parallel.num_steps` that the
    common flags give."""
    return dict(batch_size=args.batch_size, max_steps=args.max_steps, num_train_epochs=args.num_train_epochs)


def loop_settings(args):
    """The keyword arguments of :func:`utils.training.train` that the common
    flags give."""
    return dict(output_dir=args.output_dir, batch_size=args.batch_size, seed=args.seed,
                logging_steps=args.logging_steps, save_steps=args.save_steps, resume=args.resume,
                num_train_epochs=args.num_train_epochs if args.max_steps <= 0 else None,
                warmup_steps=args.warmup_steps, warmup_proportion=args.warmup_proportion,
                group_by_length=args.group_by_length, debug_exit_after_step=args.debug_exit_after_step,
                debug_exit_before_checkpoint=args.debug_exit_before_checkpoint)
