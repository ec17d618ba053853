"""Reading the program of a Paddle static inference model, in either line's format.

* paddle 2.6 writes ``PREFIX.pdmodel``: a ``ProgramDesc`` protobuf whose ops
  have a ``type`` ("matmul_v2"), named inputs (``op.input("Y")``) and
  attributes (``op.attr("trans_y")``); variables live in the block.
* paddle 3 writes ``PREFIX.json``: a PIR program whose ops have a ``name()``
  ("pd_op.matmul"), positional operands (values with a ``shape`` and a
  defining op: ``builtin.parameter`` for weights) and ``attrs()``; constant
  shapes are ``pd_op.full_int_array`` ops feeding the op that uses them.

Only the program is read (no parameters are loaded).  :func:`bert_events`
reduces either format to the same few facts the analysis needs, so
:func:`utils.analysis.shape_from_static` has one implementation for both.
"""
import contextlib

from .errors import UserError
from .inference import EXPECTED, check_readable, is_pir, model_file

LOOKUPS = {"lookup_table_v2", "lookup_table", "pd_op.embedding"}
PRODUCTS = {"matmul_v2", "matmul", "mul", "pd_op.matmul"}
RESHAPES = {"reshape2", "reshape", "pd_op.reshape"}


@contextlib.contextmanager
def _static_mode():
    import paddle
    was_dynamic = paddle.in_dynamic_mode()
    paddle.enable_static()   # both parsers need static mode
    try:
        yield paddle
    finally:
        if was_dynamic:
            paddle.disable_static()


def load(prefix):
    """The program of the static model at ``prefix`` (a 2.x ``Program`` or a
    PIR program), without its parameters."""
    mfile = model_file(prefix)
    if mfile is None:
        raise UserError(f"{prefix}: no static model here (expected {EXPECTED.replace('PREFIX', prefix)})")
    check_readable(mfile)
    with _static_mode() as paddle:
        if is_pir(mfile):
            prog = paddle.static.Program()
            paddle.base.core.deserialize_pir_program(mfile, prog)
            return prog
        from paddle.base.framework import Program
        with open(mfile, "rb") as f:
            return Program.parse_from_string(f.read())


def op_name(op):
    """The op's type in either format ("matmul_v2", "pd_op.matmul")."""
    return op.name() if callable(getattr(op, "name", None)) else op.type


def op_counts(prefix):
    """[(op type, count)] of a static program, most frequent first."""
    counts = {}
    prog = load(prefix)   # keep the program alive while its ops are read (a PIR op outliving it segfaults)
    for op in prog.global_block().ops:
        counts[op_name(op)] = counts.get(op_name(op), 0) + 1
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def _legacy_var(block, name):
    """(shape, persistable) of a dense tensor variable of a 2.x block, else (None, False)."""
    from paddle.base import core
    if not block.has_var(name):
        return None, False
    v = block.var(name)
    if v.type != core.VarDesc.VarType.LOD_TENSOR:
        return None, False
    return list(v.shape), bool(v.persistable)


def _legacy_events(block):
    for op in block.ops:
        if op.type in LOOKUPS:
            yield "lookup", _legacy_var(block, op.input("W")[0])[0]
        elif op.type in PRODUCTS:
            xs, _ = _legacy_var(block, op.input("X")[0])
            ys, ypers = _legacy_var(block, op.input("Y")[0])
            if ypers and ys is not None and len(ys) == 2:
                trans = op.attr("trans_y") if op.has_attr("trans_y") else (
                    op.attr("transpose_Y") if op.has_attr("transpose_Y") else False)
                yield "product", (ys, bool(trans), len(xs or []))
        elif op.type in RESHAPES:
            yield "reshape", list(op.attr("shape") or [])


def _producer(value):
    op = value.get_defining_op()
    return (op, op.name()) if op is not None else (None, "")


def _pir_events(block):
    for op in block.ops:
        name = op.name()
        if name in LOOKUPS:
            yield "lookup", list(op.operands_source()[1].shape)
        elif name in PRODUCTS:
            x, y = op.operands_source()[:2]
            if _producer(y)[1] == "builtin.parameter" and len(y.shape) == 2:
                yield "product", (list(y.shape), bool(op.attrs().get("transpose_y", False)), len(x.shape))
        elif name in RESHAPES:
            src, src_name = _producer(op.operands_source()[1])
            if src_name == "pd_op.full_int_array":
                yield "reshape", [int(v) for v in src.attrs()["value"]]


def bert_events(prefix):
    """The program's ops that tell a BERT's shapes, in program order, as
    ("lookup", table shape), ("product", (weight shape, transposed, rank of
    the input)) for products with a 2-D weight, and ("reshape", target)."""
    prog = load(prefix)
    block = prog.global_block()
    events = _pir_events(block) if is_pir(prefix) else _legacy_events(block)
    return list(events)
