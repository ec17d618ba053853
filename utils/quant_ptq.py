"""PaddleSlim post-training quantization of a static BERT program: the
quantizable sites (one per matmul / matmul_v2 / mul op), one PTQ run for a
recipe (algorithm, calibration batches, weight scale type, sites kept FP32),
and the scale reuse of the sensitivity search (the fixes of paddle 2.6's
quantizer that every run needs are in :mod:`utils.compat`, fixes 7-9).

A *site* is one quantizable op, named by its role when the program is a BERT
encoder (``L3.ffn2``: the second FFN Linear of encoder layer 3; roles q, k,
v, scores, context, out, ffn1, ffn2) and keyed by the tensor that PaddleSlim's
``skip_tensor_list`` matches: the op's weight for a Linear (q, k and v share
their input, so the input would skip all three), its first activation input
for the two attention products.
"""
import contextlib
import copy
import os
from collections import Counter

import numpy as np

from . import inference
from .compat import ptq_fixes

QUANTIZABLE_OPS = ["matmul", "matmul_v2", "mul"]
# op types that show a quantized program (QDQ format: quantize_linear /
# dequantize_linear; legacy format: fake_quantize_* / fake_*dequantize_*)
QUANT_OP_PREFIXES = ("quantize_linear", "dequantize_linear", "fake_quantize", "fake_dequantize",
                     "fake_channel_wise")
ROLES = ("q", "k", "v", "scores", "context", "out", "ffn1", "ffn2")   # the 8 matmuls of one encoder layer
RECIPE_KEYS = ("algo", "batch_num", "weight_quantize_type", "hist_percent")


@contextlib.contextmanager
def static_program(prefix):
    """(program, scope) of a saved static model, in static mode for the block;
    the mode the caller was in is restored after it."""
    import paddle
    was_dynamic = paddle.in_dynamic_mode()
    paddle.enable_static()
    try:
        exe = paddle.static.Executor(paddle.CPUPlace())
        scope = paddle.static.Scope()
        with paddle.static.scope_guard(scope):
            program, _, _ = paddle.static.load_inference_model(prefix, exe)
            yield program, scope
    finally:
        if was_dynamic:
            paddle.disable_static()


def quant_sites(prefix):
    """The quantizable ops of a static model in program order:
    ``[{"name", "key", "op", "head"}]``.  ``head``: kept FP32 by default --
    the output layer (the last matmul/mul: an int8 output would put logits
    and regression scores on 255 levels) and every op whose activation is
    rank 2 (pooler and classifier of sequence models, run once per sequence:
    no measurable cost)."""
    with static_program(prefix) as (program, _):
        block = program.global_block()
        sites = []
        for op in block.ops:
            if op.type not in QUANTIZABLE_OPS:
                continue
            names = op.input_arg_names
            weights = [n for n in names if n in block.vars and block.var(n).persistable]
            acts = [n for n in names if n in block.vars and not block.var(n).persistable]
            sites.append({"key": weights[0] if weights else acts[0], "op": op.type, "acts": acts,
                          "head": any(len(block.var(n).shape) == 2 for n in acts)})
    if sites:
        sites[-1]["head"] = True
    body = [s for s in sites if not s["head"]]
    for k, s in enumerate(body):
        s["name"] = f"L{k // len(ROLES)}.{ROLES[k % len(ROLES)]}" if len(body) % len(ROLES) == 0 \
            else f"matmul{k}"
    heads = [s for s in sites if s["head"]]
    for k, s in enumerate(heads):
        s["name"] = "output" if k == len(heads) - 1 else f"head{k}"
    return sites


def matching_sites(sites, prefix):
    """The sites of the static model at PREFIX, which must hold the ops of
    ``sites`` (another export of the same network, such as the tuned model of
    ``quantize.py --qat_steps``) in the same order: names come from
    ``sites``, tensor names (``key``, ``acts``) from PREFIX.  A different
    program is an error, never a silent mismatch: tensor names are how ops
    are kept FP32, and a name the program lacks would keep nothing."""
    other = quant_sites(prefix)
    if [(s["name"], s["op"], s["head"]) for s in other] != [(s["name"], s["op"], s["head"]) for s in sites]:
        raise RuntimeError(f"{prefix}: its quantizable ops differ from the original model's "
                           f"({len(other)} against {len(sites)}); cannot carry the ops kept FP32 over")
    return other


def head_skip(sites):
    """Tensor names that keep the head sites FP32 (every activation input:
    the behaviour quantize.py always had)."""
    return sorted({a for s in sites if s["head"] for a in s["acts"]})


def calibration_loader(batches, feed_names):
    """The quantizer of paddle 2.6 accepts only a ``paddle.io.DataLoader``; it
    calls the loader and iterates feed dicts.  A subclass over fixed batches."""
    import paddle

    class CalibrationLoader(paddle.io.DataLoader):
        def __init__(self):  # no worker machinery: the batches are in memory
            self.batches = [dict(zip(feed_names, b)) for b in batches]

        def __iter__(self):
            return iter(self.batches)

        def __call__(self):
            return iter(self.batches)

        def __len__(self):
            return len(self.batches)

    return CalibrationLoader()


@contextlib.contextmanager
def reused_scales(store):
    """Calibrate once per recipe, then only rewrite the program.  paddle 2.6's
    quantizer samples the activations of every quantizable op whatever
    ``skip_tensor_list`` says (skipping only marks ops afterwards), so the
    scales of one recipe do not depend on the ops kept FP32.  An empty
    ``store`` records the weight and activation scales just before the
    program is rewritten; a filled one is put back there instead, and the
    calibration passes (run on no batch), the histogram threshold step and
    the activation bookkeeping of the sampling are skipped: the
    sensitivity's one-op trials then cost a program rewrite instead of a
    calibration (checked equal in tests/test_quantize_onnx.py)."""
    from paddle.static.quantization.post_training_quantization import PostTrainingQuantization as PTQ
    names = ("_update_program", "_calculate_kl_hist_threshold", "_init_sampling_act_histogram",
             "_set_activation_persistable", "_reset_activation_persistable")
    saved = {n: PTQ.__dict__[n] for n in names}
    replay = bool(store)

    def update_program(self):
        if replay:
            self._quantized_var_threshold = copy.deepcopy(store["var_threshold"])
            self._quantized_threshold = copy.deepcopy(store["threshold"])
        else:
            store.update(var_threshold=copy.deepcopy(self._quantized_var_threshold),
                         threshold=copy.deepcopy(self._quantized_threshold))
        return saved["_update_program"](self)

    PTQ._update_program = update_program
    if replay:   # no forward pass: nothing to sample, threshold or keep in the scope
        for n in names[1:]:
            setattr(PTQ, n, lambda self: None)
    try:
        yield replay
    finally:
        for n, f in saved.items():
            setattr(PTQ, n, f)


def run_ptq(model_prefix, recipe, batches, feed_names, out_dir, skip=(), with_observers=False, qdq=True,
            scales=None):
    """PaddleSlim's post-training quantization of ``model_prefix`` with
    ``recipe`` (``algo``, ``weight_quantize_type``, ``hist_percent``) on
    ``batches`` (lists of feed arrays); writes out_dir/model.pdmodel/.pdiparams.
    ``skip``: tensor names whose consuming ops stay FP32.  ``scales``: a dict
    that records this recipe's scales when empty and reuses them when filled
    (see :func:`reused_scales`)."""
    import paddle
    from paddleslim.quant import quant_post_static
    mfile = inference.model_file(model_prefix)
    algo = recipe["algo"]
    paddle.enable_static()
    try:
        exe = paddle.static.Executor(paddle.CPUPlace())
        scope = paddle.static.Scope()
        with contextlib.ExitStack() as stack:
            stack.enter_context(paddle.static.scope_guard(scope))
            stack.enter_context(ptq_fixes(algo, with_observers))   # paddle 2.6's quantizer defects: utils/compat.py
            replay = scales is not None and stack.enter_context(reused_scales(scales))
            quant_post_static(
                executor=exe, model_dir=os.path.dirname(os.path.abspath(mfile)), quantize_model_path=out_dir,
                model_filename=os.path.basename(mfile),
                params_filename=os.path.basename(model_prefix) + ".pdiparams",
                save_model_filename="model.pdmodel", save_params_filename="model.pdiparams",
                data_loader=calibration_loader([] if replay else batches, feed_names),
                batch_size=len(batches[0][0]), batch_nums=0 if replay else len(batches), scope=scope, algo=algo,
                hist_percent=recipe.get("hist_percent", 0.9999),
                quantizable_op_type=list(QUANTIZABLE_OPS), weight_quantize_type=recipe["weight_quantize_type"],
                onnx_format=qdq, skip_tensor_list=sorted(skip) or None)
    finally:
        paddle.disable_static()
    prefix = os.path.join(out_dir, "model")
    if qdq and not with_observers:
        drop_fp32_output_qdq(prefix)
    return prefix


def drop_fp32_output_qdq(prefix):
    """Remove the quantize/dequantize pairs that paddle 2.6's QDQ export puts
    on the output of every matmul it calibrated, where that matmul runs FP32
    (kept FP32 by ``skip``, or the head).  Such a pair rounds an FP32 op's
    output to 8 bits for nothing, and oneDNN takes its scale as leave to run
    the following reshape / transpose and the next Linear in INT8: with
    every op of a 6-layer model kept FP32, all six attention output
    projections still ran INT8 and 2% of the entity predictions changed.
    Rewrites PREFIX.pdmodel in place (only the program is read and written;
    the parameters are untouched); returns the number of pairs removed."""
    from . import static_program
    from .publish import staged_file
    program = static_program.load(prefix)
    block = program.global_block()
    ops = list(block.ops)
    producer = {out: op for op in ops for out in op.output_arg_names}

    def runs_fp32(op):   # a matmul none of whose inputs is dequantized
        return op is not None and op.type in QUANTIZABLE_OPS and not any(
            producer.get(a) is not None and producer[a].type == "dequantize_linear" for a in op.input_arg_names)
    drop = []   # indices into ops
    for k, q in enumerate(ops):
        if q.type != "quantize_linear" or not runs_fp32(producer.get(q.input("X")[0])):
            continue
        src, qout = q.input("X")[0], q.output("Y")[0]
        users = [(i, op) for i, op in enumerate(ops) if qout in op.input_arg_names]
        if len(users) != 1 or users[0][1].type != "dequantize_linear":
            continue
        d, deq = users[0]
        dout = deq.output("Y")[0]
        for op in ops:
            if dout in op.input_arg_names:
                op._rename_input(dout, src)
        drop += [k, d]
    for k in sorted(drop, reverse=True):
        block._remove_op(k)
    if drop:
        with staged_file(inference.model_file(prefix)) as tmp:
            with open(tmp, "wb") as f:
                f.write(program.desc.serialize_to_string())
    return len(drop) // 2


def inspect_program(prefix):
    """Op counts of a saved program and the bytes of its parameters by dtype."""
    with static_program(prefix) as (program, scope):
        ops = Counter(op.type for block in program.blocks for op in block.ops)
        by_dtype = Counter()
        for var in program.list_vars():
            if var.persistable and var.name not in ("feed", "fetch"):
                v = scope.find_var(var.name)
                if v is not None:
                    arr = np.asarray(v.get_tensor())
                    by_dtype[str(arr.dtype)] += int(arr.nbytes)
    quant_ops = {k: v for k, v in ops.items() if k.startswith(QUANT_OP_PREFIXES)}
    return {"quant_ops": quant_ops, "quantized_op_inputs": sum(ops[k] for k in QUANTIZABLE_OPS),
            "param_bytes_by_dtype": dict(by_dtype)}


def model_bytes(prefix):
    return sum(os.path.getsize(f) for f in (inference.model_file(prefix), prefix + ".pdiparams")
               if f and os.path.isfile(f))


def executed_int8(int8_prefix, sites):
    """Which of ``sites`` (:func:`quant_sites` of the FP32 model) the CPU
    predictor really runs in INT8: oneDNN's passes keep some quantized ops in
    FP32 (on paddle 2.6 the attention scores product: its 1/sqrt(d) scale and
    mask add are fused into an FP32 matmul).  Builds the predictor of the
    quantized model, saves its optimized program in a temporary directory and
    reads each fc / matmul op's ``mkldnn_data_type``; a product is mapped to
    its layer through the fc ops that compute its operands.  Returns
    ``{"int8": [site names], "fp32": [site names]}`` (sites the optimized
    program does not show are in neither)."""
    import shutil
    import tempfile
    import paddle.inference as pi
    roles = {s["key"]: s["name"] for s in sites}
    tmp = tempfile.mkdtemp(prefix="int8_graph_")
    try:
        config = pi.Config(inference.model_file(int8_prefix), int8_prefix + ".pdiparams")
        config.disable_gpu()
        config.disable_glog_info()
        config.enable_mkldnn()
        config.enable_mkldnn_int8()
        config.set_optim_cache_dir(tmp)
        config.enable_save_optim_model(True)
        pi.create_predictor(config)
        with static_program(os.path.join(tmp, "_optimized")) as (program, _):
            ops = list(program.global_block().ops)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    producer = {out: op for op in ops for out in op.output_arg_names}

    def source_fc(name, depth=0):   # the weight of the fc whose output reaches ``name`` through layout ops
        op = producer.get(name)
        if op is None or depth > 8:
            return None
        if op.type == "fc":
            return op.input("W")[0]
        if op.type in ("quantize", "dequantize", "reshape2", "transpose2", "fused_transpose", "fused_reshape2",
                       "scale", "requantize"):
            return source_fc(op.input_arg_names[0], depth + 1)
        return None

    result = {"int8": [], "fp32": []}
    for op in ops:
        weight = op.input("W" if op.type == "fc" else "Y")[0] if op.type in ("fc", "mul", "matmul", "matmul_v2") \
            else None
        name = roles.get(weight)
        if name is None and op.type in ("fused_matmul", "matmul", "matmul_v2"):
            for arg in op.input_arg_names:
                w = roles.get(source_fc(arg))
                if w and w.split(".")[-1] in ("q", "k", "v"):
                    name = w.rsplit(".", 1)[0] + (".context" if w.endswith(".v") else ".scores")
                    break
        if name:
            dtype = op.attr("mkldnn_data_type") if op.has_attr("mkldnn_data_type") else "float32"
            result["int8" if dtype == "int8" else "fp32"].append(name)
    return result
