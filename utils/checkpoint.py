"""Crash-safe training checkpoints: ``checkpoints/step-N`` (model weights as
safetensors, optimizer state, ``state.json``) and ``checkpoints/latest``
naming the newest complete one."""
import json
import os
import shutil

from .errors import UserError
from .modeling import find_file, read_state_dict, write_state_dict
from .output_dir import CHECKPOINT_DIR
from .publish import publish_dir, staging_dir, write_json_atomic, write_text_atomic
from .safe_pickle import load_tensors

LATEST = "latest"


def _unwrap(model):
    import paddle
    return model._layers if isinstance(model, paddle.DataParallel) else model


def save_checkpoint(output_dir, step, model, optimizer, scheduler, state):
    """Write ``checkpoints/step-N`` completely, then point ``latest`` at it
    with an atomic rename, then delete older checkpoints.  A crash at any
    moment leaves ``latest`` naming a complete checkpoint."""
    import paddle
    root = os.path.join(output_dir, CHECKPOINT_DIR)
    name = f"step-{step}"
    with staging_dir(os.path.join(root, name)) as tmp:
        write_state_dict(_unwrap(model).state_dict(), os.path.join(tmp, "model.safetensors"))
        # paddle.save: read back through utils.safe_pickle (arrays and dicts only)
        paddle.save(optimizer.state_dict(), os.path.join(tmp, "optimizer.pdopt"))
        write_json_atomic(os.path.join(tmp, "state.json"), dict(state, step=step, scheduler=scheduler.state_dict()))
        publish_dir(tmp, os.path.join(root, name))
    write_text_atomic(os.path.join(root, LATEST), name)
    for old in os.listdir(root):      # older checkpoints, and staging left by a killed run
        if (old.startswith("step-") and old != name) or old.startswith(".step-"):
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


def has_checkpoint(output_dir):
    return os.path.isfile(os.path.join(output_dir, CHECKPOINT_DIR, LATEST))


def load_checkpoint(output_dir, model, optimizer, scheduler):
    """Restore the latest checkpoint; returns its state dict (None if none)."""
    root = os.path.join(output_dir, CHECKPOINT_DIR)
    latest = os.path.join(root, LATEST)
    if not os.path.isfile(latest):
        return None
    with open(latest) as f:
        ckpt = os.path.join(root, f.read().strip())
    try:
        with open(os.path.join(ckpt, "state.json")) as f:
            state = json.load(f)
        net = _unwrap(model)
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
