"""Read the tensors of a TorchScript archive (``torch.jit.save``) without torch.

A TorchScript ``.pt`` file is a zip: ``<root>/data.pkl`` pickles the module
tree (objects of the scripted ``__torch__.*`` classes whose attributes are
sub-modules, tensors and plain values), ``<root>/data/<key>`` holds the raw
bytes of each storage, and ``<root>/code/`` the scripted Python.  Only the
pickle and the storages are read here; the code is never looked at.

The unpickler is restricted: it resolves

- ``torch._utils._rebuild_tensor_v2`` (a tensor: storage, offset, size,
  stride) and the ``torch.*Storage`` types, whose bytes come from the zip;
- ``collections.OrderedDict`` (the empty backward-hook dict of each tensor);
- ``__torch__.*`` names, as an inert :class:`ScriptObject` that records its
  class name and attributes (no code of the archive is run or imported).

Any other global is refused with :class:`utils.errors.UserError` naming the
file and the global.  The reader returns ``{dotted.name: numpy array}``,
like a ``state_dict`` (``model.encoder.layer.0.attention.self.query.weight``).
"""
import pickle
import zipfile

import numpy as np

from .errors import UserError
from .safe_pickle import RestrictedUnpickler

# storage type -> numpy dtype (little-endian, as torch.jit.save writes them)
STORAGE_DTYPES = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2",
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2",
    "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?",
}


class ScriptObject:
    """A module (or other scripted object) of the archive: its class name and
    its pickled attributes, nothing else."""

    qualname = "?"

    def __setstate__(self, state):     # pickle's BUILD (NEWOBJ calls no __init__)
        self.attrs = getattr(self, "attrs", {})
        if isinstance(state, dict):
            self.attrs.update(state)
        else:   # classes with a custom __getstate__ pickle any value
            self.attrs["__state__"] = state


def _script_class(qualname):
    return type("ScriptObject", (ScriptObject,), {"qualname": qualname})


class StorageRef:
    """A storage named by the pickle (persistent id), read lazily from the zip."""

    def __init__(self, dtype, key, numel):
        self.dtype, self.key, self.numel = np.dtype(dtype), key, numel


def _rebuild_tensor(storage, offset, size, stride, *rest):
    if not isinstance(storage, np.ndarray):
        raise pickle.UnpicklingError("_rebuild_tensor_v2 called without a storage")
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    need = offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1 if all(size) else offset
    if offset < 0 or any(s < 0 for s in stride) or need > storage.size:
        raise pickle.UnpicklingError(f"tensor of size {list(size)} at offset {offset} overruns its storage "
                                     f"of {storage.size} elements")
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size,
                                           strides=tuple(s * item for s in stride), writeable=False)
    return np.array(view)   # a contiguous copy that owns its data


ALLOWED = {("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor, ("collections", "OrderedDict"): dict,
           **{("torch", storage): dtype for storage, dtype in STORAGE_DTYPES.items()}}


class _Unpickler(RestrictedUnpickler):
    def __init__(self, fileobj, zf, root, path):
        super().__init__(fileobj, path, ALLOWED, "only tensors, storages and TorchScript module records "
                         "are rebuilt")
        self._zf, self._root, self._path = zf, root, path
        self._storages = {}

    def lookup(self, module, name):
        if module == "__torch__" or module.startswith("__torch__."):
            return _script_class(f"{module}.{name}")
        return super().lookup(module, name)

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise UserError(f"{self._path}: unexpected persistent id {pid!r} in the pickle")
        _, dtype, key, _location, numel = pid
        if not isinstance(dtype, str) or dtype not in STORAGE_DTYPES.values():
            raise UserError(f"{self._path}: persistent id {pid!r} names no storage type")
        key = str(key)
        if key not in self._storages:
            member = f"{self._root}/data/{key}"
            try:
                raw = self._zf.read(member)
            except KeyError:
                raise UserError(f"{self._path}: the pickle names storage {key}, which the archive lacks")
            arr = np.frombuffer(raw, dtype=np.dtype(dtype))
            if arr.size < int(numel):
                raise UserError(f"{self._path}: storage {key} holds {arr.size} elements, the pickle says {numel}")
            self._storages[key] = arr
        return self._storages[key]


def _archive_root(zf, path):
    pkls = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pkls) != 1:
        raise UserError(f"{path}: not a TorchScript archive (expected one <name>/data.pkl in the zip, "
                        f"found {len(pkls)})")
    root = pkls[0].split("/")[0]
    if not any(n.startswith(f"{root}/code/") for n in zf.namelist()):
        raise UserError(f"{path}: has {root}/data.pkl but no {root}/code/: a torch.save checkpoint, not a "
                        "TorchScript archive")
    return root


def read_module_tree(path):
    """Unpickle the archive's module tree with the restricted unpickler."""
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path}: not a TorchScript archive (not a zip file)")
    with zipfile.ZipFile(path) as zf:
        root = _archive_root(zf, path)
        order = f"{root}/byteorder"
        if order in zf.namelist() and zf.read(order).strip() != b"little":
            raise UserError(f"{path}: big-endian storages are not supported")
        with zf.open(f"{root}/data.pkl") as f:
            try:
                return _Unpickler(f, zf, root, path).load()
            except UserError:
                raise
            except Exception as e:   # truncated / corrupt pickle
                raise UserError(f"{path}: cannot read {root}/data.pkl ({type(e).__name__}: {e})")


def flatten_tensors(obj, prefix=""):
    """``{dotted.name: ndarray}`` of every tensor reachable through module
    attributes (sub-modules recurse; plain values are skipped)."""
    out = {}
    attrs = getattr(obj, "attrs", {}) if isinstance(obj, ScriptObject) else obj if isinstance(obj, dict) else {}
    for k, v in attrs.items():
        name = f"{prefix}{k}"
        if isinstance(v, np.ndarray):
            out[name] = v
        elif isinstance(v, (ScriptObject, dict)):
            out.update(flatten_tensors(v, name + "."))
    return out


def load_tensors(path):
    """Every tensor of the TorchScript archive at ``path``, by dotted name."""
    tree = read_module_tree(path)
    if not isinstance(tree, ScriptObject):
        raise UserError(f"{path}: the archive's data.pkl holds no module")
    tensors = flatten_tensors(tree)
    if not tensors:
        raise UserError(f"{path}: the archive holds no tensors")
    return tensors


def module_attr(path_or_tree, dotted):
    """A plain attribute of a sub-module, e.g. ``model.encoder.layer.0.attention.self.num_attention_heads``
    (None when absent)."""
    node = read_module_tree(path_or_tree) if isinstance(path_or_tree, str) else path_or_tree
    for part in dotted.split("."):
        if not isinstance(node, ScriptObject) or part not in getattr(node, "attrs", {}):
            return None
        node = node.attrs[part]
    return node


def encoder_tensors(tensors, path, anchor="embeddings.word_embeddings.weight"):
    """Keep the BERT encoder of a larger scripted model.

    The encoder is found by ``anchor``: a model that holds a BertModel under
    the attribute ``model`` has ``model.embeddings.word_embeddings.weight``.
    Returns (``{name without the prefix: array}`` for the tensors under that
    prefix, sorted names of the other tensors, the prefix).  A model whose
    encoder sits at the top (prefix ``""`` or ``"bert."``) is returned
    unchanged.  No encoder, or two of them, is a UserError naming ``path``."""
    prefixes = sorted(k[:-len(anchor)] for k in tensors if k.endswith(anchor))
    if not prefixes:
        raise UserError(f"{path}: no BERT encoder in the archive (no tensor named ...{anchor})")
    if len(prefixes) > 1:
        raise UserError(f"{path}: {len(prefixes)} BERT encoders in the archive (under "
                        f"{', '.join(p or '<top>' for p in prefixes)}); cannot tell which to convert")
    prefix = prefixes[0]
    if prefix in ("", "bert."):
        return dict(tensors), [], prefix
    kept = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    others = sorted(k for k in tensors if not k.startswith(prefix))
    return kept, others, prefix
