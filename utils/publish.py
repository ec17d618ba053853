"""Stage, then publish: the one way the suite writes an output.

Every writer builds its output in a staging place beside the target (same
file system, so the final move is a rename), checks it, and only then
publishes it.  A crash or a refused check leaves the target as it was and
removes the staging place; nothing half-written is ever visible under the
target's name.

    with staging_dir(out_dir) as tmp:          # a whole directory
        model.save_pretrained(tmp)
        publish_dir(tmp, out_dir)

    with staging_dir(prefix_dir) as tmp:       # a static model: PREFIX.* files
        write(os.path.join(tmp, "model"))
        publish_prefix(os.path.join(tmp, "model"), out_prefix)

    write_json_atomic(path, obj)               # one file
    with staged_file(path) as tmp: ...          # one file written by a library

No module here imports paddle.
"""
import contextlib
import json
import os
import shutil
import tempfile


def _umask_mode(mode):
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


@contextlib.contextmanager
def staging_dir(target):
    """A fresh directory beside ``target`` (created with the usual mode, not
    mkdtemp's 0700); removed on exit unless it was published."""
    target = os.path.abspath(target)
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.tmp-", dir=parent)
    os.chmod(tmp, _umask_mode(0o777))
    try:
        yield tmp
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def publish_dir(src, dst):
    """Move directory ``src`` to ``dst``.  An existing ``dst`` is renamed away
    first and deleted only after the move succeeded; if the move fails it is
    put back."""
    dst = os.path.abspath(dst)
    old = None
    if os.path.lexists(dst):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(dst)}.old-", dir=os.path.dirname(dst))
        os.replace(dst, os.path.join(old, "d"))
    try:
        os.replace(src, dst)
    except BaseException:
        if old and not os.path.lexists(dst):
            os.replace(os.path.join(old, "d"), dst)
        raise
    finally:
        if old:
            shutil.rmtree(old, ignore_errors=True)
    return dst


def interrupted_publish(dst):
    """If a :func:`publish_dir` into ``dst`` was killed between its two
    renames (``dst`` gone, its previous version parked beside it), the path
    of that previous version; else None."""
    dst = os.path.abspath(dst)
    parent, base = os.path.split(dst)
    if os.path.lexists(dst) or not os.path.isdir(parent):
        return None
    for name in sorted(os.listdir(parent)):
        parked = os.path.join(parent, name, "d")
        if name.startswith(f".{base}.old-") and os.path.isdir(parked):
            return parked
    return None


def restore_interrupted(dst):
    """Put back the previous version of ``dst`` that an interrupted
    :func:`publish_dir` parked (see :func:`interrupted_publish`); returns
    True if it did."""
    parked = interrupted_publish(dst)
    if parked is None:
        return False
    os.replace(parked, os.path.abspath(dst))
    shutil.rmtree(os.path.dirname(parked), ignore_errors=True)
    return True


def publish_file(src, dst):
    """Move file ``src`` over ``dst`` (one rename) with the usual file mode."""
    os.chmod(src, _umask_mode(0o666))
    os.replace(src, os.path.abspath(dst))
    return dst


def publish_prefix(src_prefix, dst_prefix):
    """Move every file or directory named ``<basename(src_prefix)>*`` (a static
    model: ``.pdmodel``/``.json``, ``.pdiparams``, ``.info.json``, the
    tokenizer directory) to the same name under ``dst_prefix``.  Returns the
    published paths."""
    src_dir, src_base = os.path.split(os.path.abspath(src_prefix))
    dst_dir, dst_base = os.path.split(os.path.abspath(dst_prefix))
    os.makedirs(dst_dir, exist_ok=True)
    done = []
    for name in sorted(os.listdir(src_dir)):
        if not name.startswith(src_base):
            continue
        src = os.path.join(src_dir, name)
        dst = os.path.join(dst_dir, dst_base + name[len(src_base):])
        if os.path.isdir(src):
            publish_dir(src, dst)
        else:
            publish_file(src, dst)
        done.append(dst)
    return done


@contextlib.contextmanager
def staged_file(path):
    """Yield a temporary path beside ``path`` for a library to write; on a
    clean exit it replaces ``path``, otherwise it is removed."""
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.tmp-", dir=os.path.dirname(path))
    os.close(fd)
    try:
        yield tmp
        publish_file(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json_atomic(path, obj):
    """Write ``obj`` as JSON to ``path`` through a synced temporary file."""
    with staged_file(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, sort_keys=False, default=float)
            f.flush()
            os.fsync(f.fileno())
    return path


def write_text_atomic(path, text):
    with staged_file(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    return path
