"""A training run's records in its --output_dir: the claim (lock and
args.json), the state a saved model records of its run, results.json, and
the directories a run creates (removed again if it fails)."""
import json
import logging
import os

from . import output_dir as outdirs
from .errors import UserError
from .parallel import is_master
from .publish import write_json_atomic

logger = logging.getLogger("bert_suite")


# flags a --resume may change: how long the run goes on and how it reports,
# not what it trains on or how (README: --resume --max_steps N shortens the decay)
RESUMABLE_CHANGES = ("max_steps", "num_train_epochs", "save_steps", "logging_steps", "device", "n_gpu",
                     "num_workers", "resume", "overwrite_output_dir", "output_dir", "debug_exit_after_step",
                     "debug_exit_before_checkpoint")
PATH_ARGS = ("model_name_or_path", "data_dir", "teacher_dir", "train_file", "dev_file", "test_file")


def _same(key, a, b):
    if key in PATH_ARGS and isinstance(a, str) and isinstance(b, str) and os.path.exists(a) and os.path.exists(b):
        return os.path.realpath(a) == os.path.realpath(b)
    return a == b


def check_resume_args(output_dir, arguments):
    """A --resume continues the run in ``output_dir`` with the flags it
    started with (its args.json): every flag but those of
    :data:`RESUMABLE_CHANGES` must be as then, else one error naming each
    that differs (a resumed run with another seed, data or batching would be
    a different run under the old one's name)."""
    path = os.path.join(output_dir, "args.json")
    if not os.path.isfile(path):
        return
    from .jsonfile import read_json
    before = read_json(path, want_object=True)
    diff = [f"--{k} {before[k]!r} there, {arguments[k]!r} now" for k in sorted(arguments)
            if k in before and k not in RESUMABLE_CHANGES and not _same(k, before[k], arguments[k])]
    if diff:
        raise UserError(f"--resume: {path} records the run with other flags: {'; '.join(diff)} (give them as "
                        f"they were, or --overwrite_output_dir to start afresh)")


def start_run(output_dir, arguments, resume=False, overwrite=False):
    """Claim ``output_dir`` for this run (lock; ``overwrite``
    (--overwrite_output_dir) clears the previous run's records) and record
    ``arguments`` (the parsed flags, a dict) in args.json; a ``resume`` must
    give the flags the run started with (:func:`check_resume_args`).  Call it
    after everything that can fail on bad input, right before training."""
    if is_master():
        if resume and not overwrite:
            check_resume_args(output_dir, arguments)
        outdirs.claim_run_dir(output_dir, resume=resume, overwrite=overwrite)
        path = os.path.join(output_dir, "args.json")
        if not (resume and os.path.isfile(path)):     # a resumed run keeps the arguments it started with
            write_json_atomic(path, arguments)
    else:
        os.makedirs(output_dir, exist_ok=True)


def end_run(output_dir):
    """Release ``output_dir`` (the lock of this process only)."""
    outdirs.release(os.path.join(output_dir, outdirs.LOCK))


def run_state(output_dir, step, total_steps, finished=False):
    """What a model directory saved during training records of its run
    (``finished`` turns true when the run ends: :func:`finish_run`)."""
    return {"output_dir": os.path.abspath(output_dir), "step": step, "total_steps": total_steps,
            "finished": finished}


def finish_run(output_dir, model_dirs):
    """Mark the model directories a finished run saved during training."""
    from .modeling import mark_run_finished
    for d in model_dirs:
        path = os.path.join(output_dir, d)
        if os.path.isdir(path):
            mark_run_finished(path)


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
