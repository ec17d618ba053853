"""Reading pickle-based weight files (``.pdparams``, ``.pdopt``) without
running code from them.

``paddle.load`` is ``pickle.load``: a pickle names any importable function
and calls it while it loads, so a model file can run ``os.system``.  This
module unpickles with a restricted :class:`pickle.Unpickler` that rebuilds
numpy arrays and plain containers and refuses every other global with a
:class:`~utils.errors.UserError` naming the file and the global.

What ``paddle.save`` (paddle 2.6.2) pickles for a layer's ``state_dict()``
and for an optimizer's ``state_dict()`` was read off the files with
``pickletools``: dicts, strings, ints, floats, and numpy arrays through
exactly these globals (protocol 4, paddle's default; protocol 2 adds
``_codecs.encode`` for the raw bytes of each array):

* ``numpy.core.multiarray._reconstruct``, ``numpy.ndarray``, ``numpy.dtype``
* ``_codecs.encode`` (protocol 2 only)

``numpy._core.multiarray._reconstruct`` is the same function under numpy 2's
module name (files written with numpy 2).  Arrays of dtype ``object`` are
refused as well: their items would be arbitrary objects.
"""
import codecs
import pickle

import numpy as np

from .errors import UserError

# paddle.save's own bookkeeping keys (dropped by paddle.load, as here)
NAME_TABLE = "StructuredToParameterName@@"
_RECONSTRUCT = np.core.multiarray._reconstruct
ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals of ``table``
    (``{(module, name): object}``) and refuses every other one with a
    UserError naming the file and the global (``why``: what the file may
    rebuild instead).  Subclasses may widen :meth:`lookup` (a name pattern)."""

    def __init__(self, f, path, table, why, **kwargs):
        super().__init__(f, **kwargs)
        self.path, self.table, self.why = path, table, why

    def lookup(self, module, name):
        return self.table.get((module, name))

    def find_class(self, module, name):
        obj = self.lookup(module, name)
        if obj is None:
            raise UserError(f"{self.path}: refused to load: the pickle asks for the global {module}.{name}, "
                            f"which could run code; {self.why}")
        return obj


class _ArraysOnly(RestrictedUnpickler):
    def __init__(self, f, path):
        super().__init__(f, path, ALLOWED, "a weight file may only rebuild numpy arrays (this is not a plain "
                         "paddle.save state dict: re-save it as safetensors from a source you trust)",
                         encoding="latin1")

    def persistent_load(self, pid):
        raise UserError(f"{self.path}: refused to load: the pickle uses persistent ids (not a paddle.save file)")


def _check_values(obj, path, where="the file"):
    """Only dicts/lists/tuples of strings, numbers, None and numeric arrays."""
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise UserError(f"{path}: refused to load: {where} is an array of Python objects")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _check_values(v, path, f"entry {k!r}")
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _check_values(v, path, where)
    elif obj is not None and not isinstance(obj, (str, bytes, bool, int, float)):
        raise UserError(f"{path}: refused to load: {where} holds a {type(obj).__name__}")


def load(path):
    """The object pickled in ``path``, rebuilt with the globals above only."""
    try:
        with open(path, "rb") as f:
            obj = _ArraysOnly(f, path).load()
    except UserError:
        raise
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, KeyError, IndexError,
            AttributeError, MemoryError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not a readable paddle.save file ({type(e).__name__}: {e})") from None
    _check_values(obj, path)
    return obj


def load_state_dict(path):
    """A paddle.save'd state dict as {name: numpy array or nested dict}, as
    ``paddle.load(path, return_numpy=True)`` returns it."""
    obj = load(path)
    if not isinstance(obj, dict):
        raise UserError(f"{path}: not a state dict (the file holds a {type(obj).__name__})")
    if "UnpackBigParamInfor@@" in obj:
        raise UserError(f"{path}: tensors split by paddle.save for size (> 4 GB) are not supported")
    obj.pop(NAME_TABLE, None)
    return obj


def load_tensors(path):
    """A state dict with its arrays as paddle tensors (as ``paddle.load``
    returns them), for ``set_state_dict`` of layers and optimizers."""
    import paddle

    def convert(v):
        if isinstance(v, np.ndarray):
            return paddle.to_tensor(v)
        return {k: convert(x) for k, x in v.items()} if isinstance(v, dict) else v
    return {k: convert(v) for k, v in load_state_dict(path).items()}
