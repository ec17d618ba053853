"""Post-training INT8 quantization of an exported static model (PaddleSlim).

    python quantize.py --model_prefix out/SST-2-ofa/static_0.5/model --data_dir glue_data \
        --output_prefix out/SST-2-ofa/int8_0.5/model

Calibration runs the FP32 model on ``--batch_num`` batches of
``--batch_size`` TRAINING examples (a seeded random sample) to choose the
activation scales; the inputs of every matmul / matmul_v2 / mul (the
encoder's Linear layers and the two attention products) are quantized to
8 bits, weights per output channel by default.  The output layer and the
per-sequence pooler stay FP32 (``--quantize_head`` to quantize them too):
they cost nothing measurable and an 8-bit output layer would put logits and
regression scores on 255 levels.  Then both models are evaluated on
the dev split(s) with Paddle Inference on CPU -- FP32 with oneDNN, INT8 with
oneDNN + ``enable_mkldnn_int8`` -- and the INT8 model is written only if
the task's main metric drops by at most ``--max_drop`` (absolute: 0.015 =
1.5 points) or ``--force`` is given; otherwise exit 1 and nothing is written.

Written next to ``--output_prefix``: PREFIX.pdmodel / .pdiparams, PREFIX.info.json
(the FP32 model's info + ``"int8": true``, both evaluations, the calibration
settings, file sizes) and the tokenizer directory, so predict.py and
benchmark.py take the INT8 prefix like any other static model.  Run it with
oneDNN INT8 on (``create_predictor(..., int8=True)``); without that flag
Paddle Inference dequantizes the weights and runs in FP32.

The default ``--quant_format qdq`` stores the quantized weights as int8 in
.pdiparams (the embeddings, LayerNorm and biases stay FP32); ``fake`` is
the older format that keeps every weight in FP32 (same file size as FP32).

Three defects of paddle 2.6's post-training quantizer are worked around here
(each only for the duration of the call; see the functions of the same
name): ``matmul_scales_only`` (stock PaddleSlim also quantizes
elementwise_add / reshape2 / transpose2 / slice ..., which made oneDNN INT8
outputs change from run to run and cost 25 accuracy points on the test
model; ``--with_observers`` restores it for comparison),
``histogram_from_zero`` (``hist`` / ``KL`` scales too small by min |x|) and
``scalar_safe_avg`` (``avg`` crashed on a 0-d tensor).

Algorithms (``--algo``), for the activation scales: ``hist`` (default) clips
at the 99.99th percentile of |x| -- BERT activations (GELU outputs,
attention scores, the residual stream) have rare large outliers that would
waste most of the 8-bit range under ``abs_max``; ``KL`` minimises the KL
divergence of the clipped histogram (TensorRT's method; paddle computes it
in pure Python: about 2 minutes even for the 2-layer test model, far more
for BERT); ``mse`` searches the scale with the least squared error;
``avg`` averages per-batch maxima; ``abs_max`` keeps the global maximum.
"""
import utils  # noqa: F401  (first: stack fixes before paddle is imported)

import argparse
import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections import Counter

import numpy as np

from utils import inference, training
from utils.errors import UserError, run_main

logger = logging.getLogger("bert_suite")

ALGOS = ("hist", "KL", "mse", "avg", "abs_max")
QUANTIZABLE_OPS = ["matmul", "matmul_v2", "mul"]
# op types that show a quantized program (QDQ format: quantize_linear /
# dequantize_linear; legacy format: fake_quantize_* / fake_*dequantize_*)
QUANT_OP_PREFIXES = ("quantize_linear", "dequantize_linear", "fake_quantize", "fake_dequantize",
                     "fake_channel_wise")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_prefix", required=True, help="static FP32 model written by export_model.py")
    p.add_argument("--output_prefix", required=True, help="path prefix of the INT8 model to write")
    p.add_argument("--data_dir", required=True,
                   help="the task's data (the task is read from PREFIX.info.json): training examples "
                        "calibrate, the dev split evaluates")
    p.add_argument("--batch_num", type=int, default=10, help="calibration batches")
    p.add_argument("--batch_size", type=int, default=16, help="training examples per calibration batch")
    p.add_argument("--algo", default="hist", choices=ALGOS, help="activation scale method (see above)")
    p.add_argument("--hist_percent", type=float, default=0.9999, help="percentile of --algo hist")
    p.add_argument("--weight_quantize_type", default="channel_wise_abs_max",
                   choices=["channel_wise_abs_max", "abs_max"],
                   help="per-output-channel (default) or one scale per weight tensor")
    p.add_argument("--quant_format", default="qdq", choices=["qdq", "fake"],
                   help="qdq (default): quantize_linear/dequantize_linear ops, quantized weights stored as "
                        "int8 in .pdiparams; fake: the older fake_quantize ops, weights kept in FP32")
    p.add_argument("--with_observers", action="store_true",
                   help="stock PaddleSlim behaviour: also record scales after elementwise_add, reshape2, transpose2, "
                        "slice, ... so oneDNN runs them in int8 too (measured non-deterministic and slower here)")
    p.add_argument("--quantize_head", action="store_true",
                   help="quantize the output layer and the per-sequence pooler too (default: kept FP32)")
    p.add_argument("--max_drop", type=float, default=0.015,
                   help="largest accepted drop of the main dev metric, absolute (0.015 = 1.5 points)")
    p.add_argument("--force", action="store_true", help="write the INT8 model even if the metric dropped more")
    p.add_argument("--max_seq_length", type=int, default=None, help="default: the exported model's")
    p.add_argument("--eval_batch_size", type=int, default=32)
    p.add_argument("--threads", type=int, default=2, help="CPU threads of the evaluation predictors")
    p.add_argument("--seed", type=int, default=0, help="which training examples calibrate")
    args = p.parse_args(argv)
    for flag in ("batch_num", "batch_size", "eval_batch_size", "threads"):
        if getattr(args, flag) <= 0:
            raise UserError(f"--{flag} must be positive, got {getattr(args, flag)}")
    if not 0.0 < args.hist_percent <= 1.0:
        raise UserError(f"--hist_percent must be in (0, 1], got {args.hist_percent}")
    if args.max_seq_length is not None and args.max_seq_length < 3:
        raise UserError(f"--max_seq_length must be at least 3, got {args.max_seq_length}")
    if not np.isfinite(args.max_drop):
        raise UserError(f"--max_drop must be a number, got {args.max_drop}")
    if os.path.abspath(args.output_prefix) == os.path.abspath(args.model_prefix):
        raise UserError("--output_prefix must differ from --model_prefix (the FP32 model is the reference)")
    return args


# ------------------------------------------------------------------ data
class TaskData:
    """Calibration and dev features of the model's task, and how to score them."""

    def __init__(self, args, info, tokenizer):
        self.task_type = info.get("task_type", "classification")
        max_len = args.max_seq_length or int(info.get("max_seq_length") or 128)
        if self.task_type == "token_classification":
            from utils.ner import NerBatcher, encode_ner, load_ner, ner_metrics
            label_list = info.get("label_list")
            if not label_list:
                raise UserError(f"{args.model_prefix}{inference.INFO_SUFFIX}: no label_list for the NER model")
            data = load_ner(args.data_dir, label_list=label_list)
            train = encode_ner(data.splits["train"], tokenizer, max_len, label_list, name="train")
            self.dev = {"dev": encode_ner(data.splits["dev"], tokenizer, max_len, label_list, name="dev")}
            self.collate = NerBatcher(tokenizer.pad_token_id)
            self.metric_name = "f1"
            self._score = lambda logits, labels: ner_metrics(logits, labels, label_list)
        else:
            from utils.data import Batcher, encode, load_glue
            from utils.metrics import MAIN_KEY, compute_metrics
            from utils.tasks import get_task
            name = info.get("task_name")
            if not name:
                raise UserError(f"{args.model_prefix}{inference.INFO_SUFFIX}: no task_name; re-export the model "
                                f"with export_model.py")
            task = get_task(name)
            splits = load_glue(task, args.data_dir, ("train",) + tuple(task.dev_splits))
            train = encode(splits["train"], tokenizer, max_len)
            self.dev = {s: encode(splits[s], tokenizer, max_len) for s in task.dev_splits}
            self.collate = Batcher(tokenizer.pad_token_id, task.is_regression)
            self.metric_name = MAIN_KEY[task.metric]
            self._score = lambda logits, labels: compute_metrics(task.metric, logits, labels)
        self.max_seq_length = max_len
        self.calibration = self._calibration_batches(train, args)

    def _calibration_batches(self, train, args):
        want = args.batch_num * args.batch_size
        if len(train) < want:
            logger.warning("calibration: %d training examples for --batch_num %d x --batch_size %d; using all of "
                           "them", len(train), args.batch_num, args.batch_size)
        order = np.random.RandomState(args.seed).permutation(len(train))[:want]
        batches = []
        for i in range(0, len(order), args.batch_size):
            ids, seg, _ = self.collate([train[j] for j in order[i:i + args.batch_size]])
            batches.append((ids, seg))
        return batches

    def evaluate(self, predictor, batch_size):
        """{split: metrics}, main score of the first split, argmax predictions
        of every split (concatenated), seconds spent in the predictor."""
        results, preds, seconds = {}, [], 0.0
        for split, feats in self.dev.items():
            outs, labels = [], []
            for i in range(0, len(feats), batch_size):
                ids, seg, lab = self.collate(feats[i:i + batch_size])
                t = time.perf_counter()
                outs.append(inference.run_predictor(predictor, ids, seg))
                seconds += time.perf_counter() - t
                labels.append(lab)
            if outs[0].ndim == 3:  # tokens: pad the time axis of every batch to the longest
                t_max = max(o.shape[1] for o in outs)
                outs = [np.pad(o, ((0, 0), (0, t_max - o.shape[1]), (0, 0))) for o in outs]
                labels = [np.pad(l, ((0, 0), (0, t_max - l.shape[1])), constant_values=-100) for l in labels]
            logits, labels = np.concatenate(outs), np.concatenate(labels)
            results[split] = self._score(logits, labels)
            preds.append(logits.reshape(-1) if self.task_type == "regression"
                         else logits.argmax(-1)[labels != -100] if logits.ndim == 3 else logits.argmax(-1))
        first = next(iter(results))
        return results, float(results[first][self.metric_name]), np.concatenate(preds), seconds


# ------------------------------------------------------------------ quantization
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


def fp32_layers(prefix):
    """Activation inputs of the quantizable ops kept in FP32: the output layer
    (the last matmul/mul of the program: its int8 output would limit the
    logits / regression scores to 255 levels) and every op whose activation
    is rank 2 (the pooler and classifier of sequence models, run once per
    sequence: no measurable cost).  Returns {input name: op type}."""
    import paddle
    paddle.enable_static()
    try:
        exe = paddle.static.Executor(paddle.CPUPlace())
        with paddle.static.scope_guard(paddle.static.Scope()):
            program, _, _ = paddle.static.load_inference_model(prefix, exe)
    finally:
        paddle.disable_static()
    block = program.global_block()
    ops = [op for op in block.ops if op.type in QUANTIZABLE_OPS]
    keep = {}
    for k, op in enumerate(ops):
        acts = [n for n in op.input_arg_names if n in block.vars and not block.var(n).persistable]
        if k == len(ops) - 1 or any(len(block.var(n).shape) == 2 for n in acts):
            keep.update({n: op.type for n in acts})
    return keep


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


def quantize(args, batches, feed_names, out_dir, skip=()):
    """Run PaddleSlim's post-training quantization; writes out_dir/model.pdmodel/.pdiparams.
    ``skip``: activation names whose consuming ops stay FP32."""
    import paddle
    from paddleslim.quant import quant_post_static
    mfile = inference.model_file(args.model_prefix)
    paddle.enable_static()
    try:
        exe = paddle.static.Executor(paddle.CPUPlace())
        scope = paddle.static.Scope()
        with contextlib.ExitStack() as stack:
            stack.enter_context(paddle.static.scope_guard(scope))
            if args.algo == "avg":
                stack.enter_context(scalar_safe_avg())
            if args.algo in ("hist", "KL"):
                stack.enter_context(histogram_from_zero())
            if not args.with_observers:
                stack.enter_context(matmul_scales_only())
            quant_post_static(
                executor=exe, model_dir=os.path.dirname(os.path.abspath(mfile)), quantize_model_path=out_dir,
                model_filename=os.path.basename(mfile),
                params_filename=os.path.basename(args.model_prefix) + ".pdiparams",
                save_model_filename="model.pdmodel", save_params_filename="model.pdiparams",
                data_loader=calibration_loader(batches, feed_names), batch_size=args.batch_size,
                batch_nums=len(batches), scope=scope, algo=args.algo, hist_percent=args.hist_percent,
                quantizable_op_type=list(QUANTIZABLE_OPS), weight_quantize_type=args.weight_quantize_type,
                onnx_format=args.quant_format == "qdq", skip_tensor_list=list(skip) or None)
    finally:
        paddle.disable_static()


def inspect_program(prefix):
    """Op counts of a saved program and the bytes of its parameters by dtype."""
    import paddle
    paddle.enable_static()
    try:
        exe = paddle.static.Executor(paddle.CPUPlace())
        scope = paddle.static.Scope()
        with paddle.static.scope_guard(scope):
            program, _, _ = paddle.static.load_inference_model(prefix, exe)
            ops = Counter(op.type for block in program.blocks for op in block.ops)
            by_dtype = Counter()
            for var in program.list_vars():
                if var.persistable and var.name not in ("feed", "fetch"):
                    v = scope.find_var(var.name)
                    if v is None:
                        continue
                    arr = np.asarray(v.get_tensor())
                    by_dtype[str(arr.dtype)] += int(arr.nbytes)
    finally:
        paddle.disable_static()
    quant_ops = {k: v for k, v in ops.items() if k.startswith(QUANT_OP_PREFIXES)}
    return {"quant_ops": quant_ops, "quantized_op_inputs": sum(ops[k] for k in QUANTIZABLE_OPS),
            "param_bytes_by_dtype": dict(by_dtype)}


def model_bytes(prefix):
    return sum(os.path.getsize(f) for f in (inference.model_file(prefix), prefix + ".pdiparams")
               if f and os.path.isfile(f))


def agreement(a, b, regression):
    if regression:
        return float(np.abs(a - b).max()) if len(a) else 0.0
    return float(np.mean(a == b)) if len(a) else 1.0


def check_model(prefix):
    """The FP32 static model's info and tokenizer directory, or a UserError."""
    if inference.model_file(prefix) is None or not os.path.isfile(prefix + ".pdiparams"):
        raise UserError(f"--model_prefix {prefix}: no static model here (expected {prefix}.pdmodel and .pdiparams, "
                        f"written by export_model.py)")
    info = inference.read_info(prefix)
    if info.get("int8"):
        raise UserError(f"--model_prefix {prefix} is already an INT8 model; give the FP32 export")
    tok_src = os.path.join(os.path.dirname(os.path.abspath(prefix)), info.get("tokenizer_dir") or "")
    if not info.get("tokenizer_dir") or not os.path.isdir(tok_src):
        raise UserError(f"{prefix}{inference.INFO_SUFFIX}: tokenizer directory {tok_src} is missing")
    return info, tok_src


def main(argv=None):
    args = parse_args(argv)
    from utils.quant_paddle3 import check_line
    check_line()  # paddle 3: one error line naming the 2.6.2 line (no working INT8 path there)
    info, tok_src = check_model(args.model_prefix)  # cheap checks first: no library import yet
    if not os.path.isdir(args.data_dir):
        raise UserError(f"--data_dir: '{args.data_dir}' is not a directory")
    training.setup_logging()
    from utils.modeling import load_tokenizer
    tokenizer = load_tokenizer(tok_src)
    data = TaskData(args, info, tokenizer)
    regression = data.task_type == "regression"

    fp32 = inference.create_predictor(args.model_prefix, threads=args.threads, mkldnn=True)
    feed_names = fp32.get_input_names()

    out_prefix = os.path.abspath(args.output_prefix)
    out_dir = os.path.dirname(out_prefix)
    made_dirs = training.make_dirs(out_dir)
    work = tempfile.mkdtemp(prefix=".quantize-", dir=out_dir)
    written = False
    try:
        t0 = time.time()
        skip = {} if args.quantize_head else fp32_layers(args.model_prefix)
        quantize(args, data.calibration, feed_names, work, skip)
        calib_seconds = time.time() - t0
        tmp_prefix = os.path.join(work, "model")
        program = inspect_program(tmp_prefix)
        if not program["quant_ops"]:
            raise SystemExit("error: the quantized program holds no quantize/dequantize op: quantization did "
                             "nothing (no matmul/mul op in the model?); nothing written")

        logger.info("evaluating FP32 (oneDNN) and INT8 (oneDNN int8) on %s",
                    ", ".join(f"{s} ({len(f)})" for s, f in data.dev.items()))
        fp32_res, fp32_score, fp32_pred, fp32_s = data.evaluate(fp32, args.eval_batch_size)
        int8 = inference.create_predictor(tmp_prefix, threads=args.threads, mkldnn=True, int8=True)
        int8_res, int8_score, int8_pred, int8_s = data.evaluate(int8, args.eval_batch_size)
        drop = fp32_score - int8_score
        agree = agreement(fp32_pred, int8_pred, regression)
        summary = {
            "metric": data.metric_name, "fp32": fp32_score, "int8": int8_score, "drop": drop,
            "max_drop": args.max_drop, "fp32_results": fp32_res, "int8_results": int8_res,
            ("max_abs_diff_of_predictions" if regression else "prediction_agreement"): agree,
            "dev_seconds": {"fp32": fp32_s, "int8": int8_s},
            "calibration": {"algo": args.algo, "batch_num": len(data.calibration), "batch_size": args.batch_size,
                            "examples": int(sum(len(b[0]) for b in data.calibration)),
                            "weight_quantize_type": args.weight_quantize_type, "quant_format": args.quant_format,
                            "with_observers": args.with_observers, "fp32_op_inputs": sorted(skip),
                            "hist_percent": args.hist_percent if args.algo == "hist" else None,
                            "quantized_ops": QUANTIZABLE_OPS, "seconds": calib_seconds},
            "program": program,
            "bytes": {"fp32": model_bytes(args.model_prefix), "int8": model_bytes(tmp_prefix)},
        }
        print(f"dev {data.metric_name}: FP32 {fp32_score:.4f}  INT8 {int8_score:.4f}  drop {drop:+.4f} "
              f"(--max_drop {args.max_drop:g})", flush=True)
        refused = drop > args.max_drop
        if refused and not args.force:
            print(json.dumps(summary), flush=True)
            raise SystemExit(f"error: INT8 {data.metric_name} {int8_score:.4f} is {drop:.4f} below FP32 "
                             f"{fp32_score:.4f} (> --max_drop {args.max_drop:g}); nothing written (try another "
                             f"--algo, more --batch_num, or --force)")
        if refused:
            logger.warning("metric drop %.4f > --max_drop %g: writing the INT8 model anyway (--force)",
                           drop, args.max_drop)

        base = os.path.basename(out_prefix)
        tok_name = base + inference.TOKENIZER_SUFFIX
        new_info = dict(info, int8=True, fp32_model=os.path.abspath(args.model_prefix), tokenizer_dir=tok_name,
                        max_seq_length=data.max_seq_length, quantization=dict(summary, forced=refused))
        inference.write_info(tmp_prefix, new_info)
        shutil.copytree(tok_src, os.path.join(work, "model" + inference.TOKENIZER_SUFFIX))
        for name in sorted(os.listdir(work)):
            dst = os.path.join(out_dir, base + name[len("model"):])
            if os.path.isdir(dst):
                shutil.rmtree(dst)
            os.replace(os.path.join(work, name), dst)
        written = True
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not written:
            training.remove_empty_dirs(made_dirs)
    b = summary["bytes"]
    logger.info("wrote %s (.pdmodel/.pdiparams/.info.json, %s): %.1f MB vs FP32 %.1f MB; prediction agreement %s; "
                "dev pass %.2f s INT8 vs %.2f s FP32", out_prefix, tok_name, b["int8"] / 1e6, b["fp32"] / 1e6,
                f"{agree:.4f}", int8_s, fp32_s)
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    run_main(main)
