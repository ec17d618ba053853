"""An INT8 CPU predictor that computes what the quantized program states.

Paddle 2.6's oneDNN INT8 passes hand the fc kernels wrong weights:

* ``quant_dequant_mkldnn_pass`` turns the int8 weights of the QDQ program
  back into FP32 with the per-channel scales applied along the *first* axis
  whenever their count equals the weight's first dimension -- the layout of
  a conv filter.  A Linear weight is ``[in, out]`` with one scale per
  output column, so every square weight (BERT's q, k, v and attention
  output projections) comes back with its scales on the wrong axis.
* ``compute_propagate_scales_mkldnn_pass`` then computes each output
  column's weight scale as the abs max of a *contiguous run* of ``in``
  values of the flattened weight instead of the column's own abs max
  (a wrong stride).  The fc kernel quantizes the FP32 weight with those
  scales and saturates: columns whose range is larger than their run's are
  clipped.  Every fc op is hit, on every CPU (the same departure with
  oneDNN's AVX2 gemm and its AMX brgemm).

Measured on BERT layers: the attention output projection 8-9% off exact int8
arithmetic on the same input, against 0.8% for exact int8 against FP32.

:func:`create` builds the stock INT8 predictor once to obtain its optimized
program (``enable_save_optim_model``), puts back into every quantized fc op
the weight the QDQ program states (int8 values x their scale along the
dequantize op's ``quant_axis``) with ``Scale_weights`` = 127 / each output
column's abs max, and returns a predictor of that program with the IR
passes off: the kernels, and the speed, are oneDNN's INT8 ones.  The fix is
in what Paddle hands the kernels, so it holds on any x86 CPU.
"""
import os
import shutil
import tempfile

import numpy as np

OPTIMIZED = "_optimized"


def stated_weights(program, scope):
    """{weight name: FP32 value} for every persistable int8 weight that a
    ``dequantize_linear`` op of the QDQ program dequantizes: the int8 values
    times their scale along the op's ``quant_axis``, over the largest int8
    value (``2**(bit_length-1) - 1``)."""
    block = program.global_block()
    out = {}
    for op in block.ops:
        if op.type != "dequantize_linear":
            continue
        name = op.input("X")[0]
        if name not in block.vars or not block.var(name).persistable:
            continue
        q = np.array(scope.find_var(name).get_tensor()).astype(np.float32)
        scale = np.array(scope.find_var(op.input("Scale")[0]).get_tensor()).astype(np.float32).reshape(-1)
        qmax = float(2 ** (op.attr("bit_length") - 1) - 1)
        if scale.size == 1:
            out[name] = q * scale[0] / qmax
        else:
            shape = [1] * q.ndim
            shape[op.attr("quant_axis")] = -1
            out[name] = q * scale.reshape(shape) / qmax
    return out


def patch_fc_weights(program, scope, stated):
    """Set the weight of every fc op that reads a weight of ``stated`` to the
    stated value, and its ``Scale_weights`` to 127 / the abs max of each
    output column (one value if the op had one).  Returns how many fc ops
    were patched."""
    import paddle
    n = 0
    for op in program.global_block().ops:
        if op.type != "fc" or not op.has_attr("Scale_weights"):
            continue
        name = op.input("W")[0]
        if name not in stated:
            continue
        w = stated[name]
        scope.find_var(name).get_tensor().set(w, paddle.CPUPlace())
        per_column = len(op.attr("Scale_weights")) > 1
        amax = np.abs(w).max(axis=0) if per_column else np.array([np.abs(w).max()])
        op._set_attr("Scale_weights", [float(127.0 / a) if a > 0 else 1.0 for a in amax])
        n += 1
    return n


def _save(program, scope, prefix):
    import paddle
    persistable = sorted(v.name for v in program.list_vars() if v.persistable and v.name not in ("feed", "fetch"))
    with open(prefix + ".pdmodel", "wb") as f:
        f.write(program.desc.serialize_to_string())
    exe = paddle.static.Executor(paddle.CPUPlace())
    with paddle.static.scope_guard(scope):
        paddle.static.save_vars(exe, os.path.dirname(prefix), main_program=program,
                                vars=[program.global_block().var(n) for n in persistable],
                                filename=os.path.basename(prefix) + ".pdiparams")


def _cpu_config(prefix, threads):
    import paddle.inference as pi
    config = pi.Config(prefix + ".pdmodel", prefix + ".pdiparams")
    config.disable_gpu()
    config.disable_glog_info()
    config.set_cpu_math_library_num_threads(threads)
    config.enable_mkldnn()
    return config


def corrected_program(prefix, work_dir, threads=2):
    """Write the stock INT8 predictor's optimized program with the fc weights
    corrected to ``WORK_DIR/fixed.pdmodel`` / ``.pdiparams``; returns
    (prefix, number of fc ops corrected)."""
    import paddle.inference as pi
    from .quant_ptq import static_program
    config = _cpu_config(prefix, threads)
    config.enable_mkldnn_int8()
    config.set_optim_cache_dir(work_dir)
    config.enable_save_optim_model(True)
    pi.create_predictor(config)
    with static_program(prefix) as (qdq, scope):
        stated = stated_weights(qdq, scope)
    fixed = os.path.join(work_dir, "fixed")
    with static_program(os.path.join(work_dir, OPTIMIZED)) as (optimized, scope):
        n = patch_fc_weights(optimized, scope, stated)
        _save(optimized, scope, fixed)
    return fixed, n


def create(prefix, threads=2, memory_optim=True):
    """A CPU INT8 predictor of the QDQ model whose fc kernels get the weights
    the program states (see the module's doc).  Its files are read into the
    predictor and removed."""
    import paddle.inference as pi
    work = tempfile.mkdtemp(prefix="onednn_int8_")
    try:
        fixed, _ = corrected_program(prefix, work, threads)
        config = _cpu_config(fixed, threads)
        config.switch_ir_optim(False)
        if memory_optim:
            config.enable_memory_optim()
        return pi.create_predictor(config)
    finally:
        shutil.rmtree(work, ignore_errors=True)
