"""Output-directory safety, shared by every script that writes.

* :func:`check_writable`: the output path is not an existing file and its
  nearest existing ancestor is a writable directory (checked before any
  model is loaded).
* :func:`check_not_over_source`: an output never is, or lies above, one of
  the run's inputs (replacing it would delete the input).
* :func:`check_replaceable`: a directory a stage replaces wholesale
  (``export_model.py --sub_model_output_dir``, ``prune.py --output_dir``) may
  only hold a model directory the suite wrote; anything else in it (an OFA run,
  a fine-tuning run, a user's notes) is refused, never deleted.
* :func:`check_run_dir` / :func:`claim_run_dir`: a training run's
  ``--output_dir``.  It may not hold another run's files unless ``--resume``
  or ``--overwrite_output_dir`` says what to do with them; one run at a time
  owns it through a lock file holding the PID and host.  A lock whose process
  is gone (a killed run) is reported and taken over only with ``--resume`` /
  ``--overwrite_output_dir``.  ``--overwrite_output_dir`` removes the suite's
  own records and model directories of the previous run (nothing else).
"""
import atexit
import fnmatch
import json
import logging
import os
import shutil
import socket
import sys
import time

from .errors import UserError

logger = logging.getLogger("bert_suite")

LOCK = ".run.lock"
CHECKPOINT_DIR = "checkpoints"
# Files a training run writes into its --output_dir (records) ...
RUN_FILES = ("results.json", "all_results.json", "args.json", "importance.json", "test_predictions.tsv",
             "report.md", "report.json", "report.png")
# ... and the model directories it writes (only removed if they are suite model directories).
RUN_MODEL_DIRS = ("best", "last", "model_best", "model_last", "final", "width_*", "model_*")
# What a model directory written by modeling.save_model / export / prune holds.
MODEL_DIR_FILES = {"config.json", "model_config.json", "model.safetensors", "model.pruned.safetensors",
                   "model_state.pdparams", "model_state.pruned.pdparams", "vocab.txt", "tokenizer_config.json",
                   "special_tokens_map.json", "added_tokens.json", "tokenizer.json", "export_info.json",
                   "prune_info.json"}


# --------------------------------------------------------------------------- paths
def _real(path):
    return os.path.realpath(os.path.abspath(path))


def is_within(path, parent):
    """``path`` is ``parent`` or lies below it (symlinks resolved)."""
    path, parent = _real(path), _real(parent)
    return path == parent or os.path.commonpath([path, parent]) == parent


def check_writable(path, flag, want_dir=True):
    """``path`` can be created (or written) by this user; no side effects."""
    if os.path.exists(path):
        if want_dir and not os.path.isdir(path):
            raise UserError(f"{flag} {path} exists and is not a directory")
        if not want_dir and os.path.isdir(path):
            raise UserError(f"{flag} {path} is a directory, not a file")
        target = path if want_dir else os.path.dirname(os.path.abspath(path))
    else:
        target = os.path.dirname(os.path.abspath(path))
        while not os.path.exists(target):
            target = os.path.dirname(target)
        if not os.path.isdir(target):
            raise UserError(f"{flag} {path}: {target} is a file, not a directory")
    if not os.access(target, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: {target} is not writable")


def check_not_over_source(path, sources, flag):
    """Refuse an output that is, or contains, one of the inputs."""
    for name, src in sources:
        if src and os.path.exists(src) and is_within(src, path):
            where = "is" if _real(src) == _real(path) else "contains"
            raise UserError(f"{flag} {path} {where} the input {name} {src}; writing there would replace it "
                            f"(choose another directory)")


def is_suite_model_dir(path):
    """A directory holding only what the suite writes for a model, with the
    suite's key in its config.json."""
    from .modeling import SUITE_KEY
    try:
        names = set(os.listdir(path))
        with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(cfg, dict) and SUITE_KEY in cfg and names <= MODEL_DIR_FILES


def check_replaceable(path, sources, flag):
    """An output directory that is replaced as a whole: new, empty, or a
    model directory the suite wrote (and no input)."""
    check_not_over_source(path, sources, flag)
    check_writable(path, flag)
    if os.path.isdir(path) and os.listdir(path) and not is_suite_model_dir(path):
        foreign = sorted(set(os.listdir(path)) - MODEL_DIR_FILES) or sorted(os.listdir(path))
        raise UserError(f"{flag} {path} exists and holds more than a model directory of the suite (e.g. "
                        f"{foreign[0]}); it would be replaced as a whole: choose a new directory")


TOKENIZER_FILES = {"vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "tokenizer.json"}


def check_static_prefix(prefix, sources, flag, tokenizer_suffix="_tokenizer"):
    """A static model prefix: its files may be replaced, its tokenizer
    directory (PREFIX + suffix, replaced as a whole) may hold only
    tokenizer files, and neither may be or contain an input."""
    tok_dir = prefix + tokenizer_suffix
    check_not_over_source(tok_dir, sources, flag)
    check_writable(os.path.dirname(os.path.abspath(prefix)) or ".", flag)
    for ext in (".pdmodel", ".pdiparams", ".json"):
        if os.path.isdir(prefix + ext):
            raise UserError(f"{flag} {prefix}: {prefix + ext} is a directory")
    if os.path.isdir(tok_dir):
        foreign = sorted(set(os.listdir(tok_dir)) - TOKENIZER_FILES)
        if foreign:
            raise UserError(f"{flag} {prefix}: {tok_dir} holds files other than a tokenizer's (e.g. {foreign[0]}); "
                            f"it would be replaced as a whole: choose another prefix")
    elif os.path.exists(tok_dir):
        raise UserError(f"{flag} {prefix}: {tok_dir} exists and is not a directory")


# --------------------------------------------------------------------------- training run directories
def run_entries(path):
    """The entries of ``path`` that a training run of the suite writes."""
    if not os.path.isdir(path):
        return []
    out = []
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if name in RUN_FILES or name == CHECKPOINT_DIR:
            out.append(name)
        elif any(fnmatch.fnmatch(name, pat) for pat in RUN_MODEL_DIRS) and is_suite_model_dir(full):
            out.append(name)
    return out


def check_run_dir(out, sources, resume=False, overwrite=False):
    """Everything about a training ``--output_dir`` that can be checked
    before a model is loaded (no side effects); ``resume`` / ``overwrite``:
    --resume / --overwrite_output_dir."""
    check_not_over_source(out, sources, "--output_dir")
    check_writable(out, "--output_dir")
    if resume and overwrite:
        raise UserError("--resume and --overwrite_output_dir: give one (continue the run, or start it again)")
    holder = read_lock(os.path.join(out, LOCK))
    if holder is not None and lock_is_live(holder):
        raise UserError(f"--output_dir {out} is in use by another run ({describe(holder)}); wait for it to "
                        f"finish or choose another directory")
    entries = run_entries(out)
    if resume or overwrite:
        return
    if holder is not None:
        raise UserError(f"--output_dir {out} holds a run that did not finish ({describe(holder)}, no longer "
                        f"running): pass --resume to continue it or --overwrite_output_dir to start again")
    if CHECKPOINT_DIR in entries:
        raise UserError(f"--output_dir {out} holds a checkpoint: pass --resume to continue it "
                        f"or --overwrite_output_dir to start again")
    if entries:
        raise UserError(f"--output_dir {out} holds another run's files ({', '.join(entries[:4])}): pass "
                        f"--overwrite_output_dir to replace them, or choose another directory")


def read_lock(path):
    """The lock's holder as a dict, None if there is no lock."""
    try:
        with open(path, encoding="utf-8") as f:
            holder = json.load(f)
        return holder if isinstance(holder, dict) else {}
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}      # being written, or damaged: a holder we cannot name


def lock_is_live(holder):
    """True unless the holder is a process of this host that is gone (or
    this very process: tests run several main()s in one process)."""
    pid, host = holder.get("pid"), holder.get("host")
    if not isinstance(pid, int) or host != socket.gethostname():
        return True      # unreadable (being written?) or another host's: cannot tell, so it holds
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe(holder, path=None):
    if not holder:
        return f"its lock file {path or LOCK} is unreadable; delete it if no run is using the directory"
    return f"pid {holder.get('pid')} on host {holder.get('host')}, since {holder.get('started')}"


def claim_run_dir(out, resume=False, overwrite=False):
    """Create ``--output_dir``, take its lock (released at exit; a killed run
    leaves it behind, stale), and with ``overwrite`` (--overwrite_output_dir)
    remove the previous run's records and model directories.  Only rank 0
    calls this."""
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, LOCK)
    takeover = resume or overwrite
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = read_lock(path)
            if holder is None:
                continue
            if lock_is_live(holder) or not takeover:
                flag = "in use by another run" if lock_is_live(holder) else "locked by a run that did not finish"
                raise UserError(f"--output_dir {out} is {flag} ({describe(holder)})")
            if holder.get("pid") != os.getpid():
                logger.warning("--output_dir %s: taking over the lock of a run that did not finish (%s)",
                               out, describe(holder))
            _remove_stale(path, holder)
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"pid": os.getpid(), "host": socket.gethostname(),
                       "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)}, f)
        atexit.register(release, path)
        break
    else:
        raise UserError(f"--output_dir {out}: could not take its lock {path}")
    if overwrite:
        clear_run(out)
    elif resume:
        restore_interrupted_swaps(out)


def restore_interrupted_swaps(out):
    """A run killed inside ``publish.publish_dir`` (between parking the old
    ``best/`` beside it and moving the new one into place) has no ``best/``:
    put the old one back before resuming (the resumed run replays the save)."""
    from .publish import restore_interrupted
    for name in sorted(os.listdir(out)):
        if name.startswith(".") and ".old-" in name:
            base = os.path.join(out, name[1:name.rindex(".old-")])
            if restore_interrupted(base):
                logger.warning("--resume: %s was being replaced when the run stopped; restored the previous "
                               "version", base)


def _remove_stale(path, holder):
    """Remove the stale lock ``holder`` at ``path``; if another process
    replaced it by its own lock meanwhile, leave that one in place."""
    tmp = path + f".stale-{os.getpid()}"
    try:
        os.replace(path, tmp)
    except FileNotFoundError:
        return            # another process took it over first; its lock decides in the next round
    if read_lock(tmp) != holder:
        try:
            os.link(tmp, path)      # a fresh lock: give it back (fails if yet another one is there)
        except FileExistsError:
            pass
    os.remove(tmp)


def release(path):
    """Remove the lock at ``path`` if this process holds it."""
    holder = read_lock(path)
    if holder and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        os.remove(path)


def clear_run(out):
    """Remove the records and model directories of the previous run in
    ``out`` (files of the suite only; anything else stays)."""
    for name in run_entries(out):
        full = os.path.join(out, name)
        if os.path.isdir(full):
            shutil.rmtree(full)
        else:
            os.remove(full)
        logger.info("--overwrite_output_dir: removed %s of the previous run", full)
