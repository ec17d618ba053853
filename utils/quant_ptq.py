"""PaddleSlim post-training quantization of a static BERT program: the
quantizable sites (one per matmul / matmul_v2 / mul op), one PTQ run for a
recipe (algorithm, calibration batches, weight scale type, sites kept FP32),
and the workarounds of paddle 2.6's quantizer that every run needs.

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

QUANTIZABLE_OPS = ["matmul", "matmul_v2", "mul"]
# op types that show a quantized program (QDQ format: quantize_linear /
# dequantize_linear; legacy format: fake_quantize_* / fake_*dequantize_*)
QUANT_OP_PREFIXES = ("quantize_linear", "dequantize_linear", "fake_quantize", "fake_dequantize",
                     "fake_channel_wise")
ROLES = ("q", "k", "v", "scores", "context", "out", "ffn1", "ffn2")   # the 8 matmuls of one encoder layer
RECIPE_KEYS = ("algo", "batch_num", "weight_quantize_type", "hist_percent")


@contextlib.contextmanager
def static_program(prefix):
    """(program, scope) of a saved static model, in static mode for the block."""
    import paddle
    paddle.enable_static()
    try:
        exe = paddle.static.Executor(paddle.CPUPlace())
        scope = paddle.static.Scope()
        with paddle.static.scope_guard(scope):
            program, _, _ = paddle.static.load_inference_model(prefix, exe)
            yield program, scope
    finally:
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
def scalar_safe_avg():
    """paddle 2.6 ``PostTrainingQuantization._sample_avg`` reshapes every
    observed activation to ``[shape[0], -1]``; the 0-d pad-id constant of the
    attention mask (``fill_constant``) makes it raise IndexError.  During the
    call, observed tensors are handed over as at least 1-d."""
    from paddle.static.quantization import post_training_quantization as ptq
    original = ptq.utils.load_variable_data
    ptq.utils.load_variable_data = lambda scope, name: np.atleast_1d(original(scope, name))
    try:
        yield
    finally:
        ptq.utils.load_variable_data = original


@contextlib.contextmanager
def histogram_from_zero():
    """paddle 2.6 ``--algo hist`` / ``KL``: the histogram of |x| spans
    [min |x|, max |x|], but the threshold is computed as ``bin index x bin
    width`` as if it started at 0, so a tensor whose |x| never comes near 0
    (a saturated tanh pooler output, the logits) gets a scale that is short by
    min |x|: on the tiny test model the pooler scale was 0.32 for values near
    +-0.83 and every logit came out 0.43x too small.  During the call the
    histograms start at 0, which makes the threshold formula right."""
    from paddle.static.quantization.post_training_quantization import PostTrainingQuantization as PTQ
    original = PTQ.__dict__["_init_sampling_act_histogram"]

    def init_sampling_act_histogram(self):
        for bounds in self._sampling_act_abs_min_max.values():
            bounds[0] = 0.0
        return original(self)

    PTQ._init_sampling_act_histogram = init_sampling_act_histogram
    try:
        yield
    finally:
        PTQ._init_sampling_act_histogram = original


@contextlib.contextmanager
def matmul_scales_only():
    """Stock paddle 2.6 post-training quantization also records scales after
    every "observer" op (elementwise_add, reshape2, transpose2, slice, scale,
    cast, ...) and inserts quantize/dequantize pairs there, which makes the
    oneDNN INT8 pass run those ops in int8 as well.  Measured on BERT graphs
    (paddle 2.6.2, 2 threads): those extra int8 ops made the outputs differ from
    run to run on the same input (up to 0.3 in logits on the tiny test model),
    cost accuracy, and were slower than quantizing the matmuls alone; and the
    observing doubles the calibration time.  During the call the observer list
    is empty: only matmul/matmul_v2/mul inputs and outputs get scales."""
    from paddle.static.quantization import quant_config
    cls = quant_config.BaseQuantizer
    original = cls.__dict__["observer_operation_types"]
    cls.observer_operation_types = property(lambda self: [])
    try:
        yield
    finally:
        cls.observer_operation_types = original


@contextlib.contextmanager
def reused_scales(store):
    """Calibrate once per recipe, then only rewrite the program.  paddle 2.6's
    quantizer samples the activations of every quantizable op whatever
    ``skip_tensor_list`` says (skipping only marks ops afterwards), so the
    scales of one recipe do not depend on the ops kept FP32.  An empty
    ``store`` records the weight and activation scales just before the
    program is rewritten; a filled one is put back there instead, and the
    calibration passes (run on no batch), the histogram threshold step and
    the activation bookkeeping of the sampling are skipped: the sensitivity's one-op trials then cost a program rewrite
    instead of a calibration (checked equal in tests/test_quantize_onnx.py)."""
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
            if algo == "avg":
                stack.enter_context(scalar_safe_avg())
            if algo in ("hist", "KL"):
                stack.enter_context(histogram_from_zero())
            if not with_observers:
                stack.enter_context(matmul_scales_only())
            replay = scales is not None and stack.enter_context(reused_scales(scales))
            quant_post_static(
                executor=exe, model_dir=os.path.dirname(os.path.abspath(mfile)), quantize_model_path=out_dir,
                model_filename=os.path.basename(mfile),
                params_filename=os.path.basename(model_prefix) + ".pdiparams",
                save_model_filename="model.pdmodel", save_params_filename="model.pdiparams",
                data_loader=calibration_loader([] if replay else batches, feed_names),
                batch_size=len(batches[0][0]), batch_nums=0 if replay else len(batches), scope=scope, algo=algo, hist_percent=recipe.get("hist_percent", 0.9999),
                quantizable_op_type=list(QUANTIZABLE_OPS), weight_quantize_type=recipe["weight_quantize_type"],
                onnx_format=qdq, skip_tensor_list=sorted(skip) or None)
    finally:
        paddle.disable_static()
    return os.path.join(out_dir, "model")


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
