"""Post-training INT8 quantization of an exported static model (PaddleSlim).

    python quantize.py --model_prefix out/SST-2-ofa/static_0.5/model --data_dir glue_data \
        --output_prefix out/SST-2-ofa/int8_0.5/model
    python quantize.py ... --agreement_file glue_data/SST-2/train_aug.tsv --search --skip_layers auto

Calibration runs the FP32 model on ``--batch_num`` batches of
``--batch_size`` TRAINING examples (a seeded random sample) to choose the
activation scales; the inputs of every matmul / matmul_v2 / mul (the
encoder's Linear layers and the two attention products) are quantized to
8 bits, weights per output channel by default.  The output layer and the
per-sequence pooler stay FP32 (``--quantize_head`` to quantize them too):
they cost nothing measurable and an 8-bit output layer would put logits and
regression scores on 255 levels.

The guard.  Both models run with Paddle Inference on CPU (FP32 with oneDNN,
INT8 with oneDNN + ``enable_mkldnn_int8``) on the dev split(s) and on up to
``--agreement_examples`` (2,000) held-out texts: ``--agreement_file`` (e.g.
the task's ``train_aug.tsv``), else the training examples calibration did
not draw.  The INT8 model is written only if its agreement with the FP32
model (utils/quant_guard.py: prediction agreement, Pearson r for
regression, entity F1 for NER) over dev + held-out texts is at least
``--min_agreement`` (0.99) and the dev metric drops by at most
``--max_drop`` (absolute: 0.015 = 1.5 points), or with ``--force``;
otherwise exit 1 and nothing is written.  Both are printed with their 95%
intervals: on 500 dev examples an accuracy difference has a standard error
of about a point, which agreement on thousands of texts does not.

The search (``--search``, ``--skip_layers auto|N``; utils/quant_search.py)
runs on a separate *search* part of the agreement texts
(``--search_examples``), never on dev or the held-out texts, within
``--search_budget`` seconds, one printed line per trial: activation
algorithm, calibration size and weight scale type; then the sensitivity of
each quantized op alone, and the most sensitive ops kept FP32 (``auto``:
until the search agreement reaches --min_agreement; ``N``: the N worst;
or ``--skip_layers L0.ffn2,L3.out``: those).  Each trial's latency at
``--latency_batch`` x the sequence length is printed beside it.

Quantization-aware distillation (``--qat_steps N --qat_model DYNAMIC_DIR``;
utils/qat.py): after the search has chosen the recipe and the ops kept FP32
on the original model, the dynamic-graph sub-model (export_model.py's
``--sub_model_output_dir``, checked to compute the same outputs as
``--model_prefix``) is fine-tuned for N steps with every quantized op of that
recipe simulated (fake quantization, straight-through gradients) to
reproduce the original model's predictions on training texts the guard and
the search never read; the tuned weights are then quantized with the
recipe, and the guard compares the result with the original FP32 model.
The tuning checkpoints itself into ``OUTPUT_PREFIX.qat/`` every
``--qat_save_steps``; after an interruption the same command with
``--resume`` continues it (the recipe and the ops kept FP32 that the search
chose are read back, not searched again) and ends with the same INT8 model.
Without ``--resume`` a left checkpoint is an error, never overwritten; once
the guard has judged, the checkpoint is removed.

Written next to ``--output_prefix``: PREFIX.pdmodel / .pdiparams, PREFIX.info.json
(the FP32 model's info + ``"int8": true``, both evaluations, agreement,
latency, the kept-FP32 ops, the search's trials, the calibration settings,
file sizes, and ``onednn``: the quantized ops oneDNN's passes still run in
FP32 -- on paddle 2.6 the attention scores products) and the tokenizer directory, so predict.py and
benchmark.py take the INT8 prefix like any other static model.  Run it with
oneDNN INT8 on (``create_predictor(..., int8=True)``); without that flag
Paddle Inference dequantizes the weights and runs in FP32.

The default ``--quant_format qdq`` stores the quantized weights as int8 in
.pdiparams (the embeddings, LayerNorm and biases stay FP32); ``fake`` is
the older format that keeps every weight in FP32 (same file size as FP32).

Three defects of paddle 2.6's post-training quantizer are worked around for
the duration of each quantization (utils/compat.py, fixes 7-9): stock
PaddleSlim also quantizes elementwise_add / reshape2 / transpose2 / slice ...,
which made oneDNN INT8 outputs change from run to run and cost 25 accuracy
points on the test model (``--with_observers`` restores it for comparison);
``hist`` / ``KL`` scales came out too small by min |x|; ``avg`` crashed on a
0-d tensor.  A fourth is undone after each quantization
(utils/quant_ptq.py, ``drop_fp32_output_qdq``): the QDQ format puts a
quantize/dequantize pair on the output of every calibrated matmul, those kept
FP32 included, which rounded their outputs to 8 bits and let oneDNN run the
next Linear in INT8 (every op kept FP32, a 6-layer model still ran its six
attention output projections in INT8).

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
import json
import logging
import os
import shutil
import tempfile
import time

import numpy as np

from utils import inference, parallel, quant_guard, quant_ptq, quant_search, runs
from utils.errors import UserError, run_main
from utils.publish import publish_prefix
from utils.quant_eval import QuantData

logger = logging.getLogger("bert_suite")

ALGOS = ("hist", "KL", "mse", "avg", "abs_max")
QUANTIZABLE_OPS = quant_ptq.QUANTIZABLE_OPS


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_prefix", required=True, help="static FP32 model written by export_model.py")
    p.add_argument("--output_prefix", required=True, help="path prefix of the INT8 model to write")
    p.add_argument("--data_dir", required=True,
                   help="the task's data (the task is read from PREFIX.info.json): training examples "
                        "calibrate, the dev split evaluates")
    p.add_argument("--batch_num", type=int, default=10, help="calibration batches")
    p.add_argument("--batch_size", type=int, default=16, help="training examples per calibration batch")
    p.add_argument("--calibration_file", default=None,
                   help="calibrate on this file's texts (the task's columns; labels ignored) instead of the "
                        "training split")
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
    g = p.add_argument_group("the guard")
    g.add_argument("--agreement_file", default=None,
                   help="held-out in-domain text (the task's columns; labels ignored), e.g. DATA/TASK/train_aug.tsv; "
                        "default: the training examples calibration did not draw")
    g.add_argument("--agreement_examples", type=int, default=None,
                   help="held-out texts the guard measures agreement on (besides dev); default: up to 2000")
    g.add_argument("--min_agreement", type=float, default=0.99,
                   help="least accepted agreement with the FP32 model over dev + held-out texts")
    g.add_argument("--max_drop", type=float, default=0.015,
                   help="largest accepted drop of the main dev metric, absolute (0.015 = 1.5 points)")
    g.add_argument("--force", action="store_true", help="write the INT8 model even if the guard refuses it")
    s = p.add_argument_group("search (on separate search texts, never on dev or the held-out texts)")
    s.add_argument("--search", action="store_true",
                   help="try the algorithms, calibration sizes and weight scale types; keep the best agreement")
    s.add_argument("--search_algos", nargs="+", default=["hist", "mse", "avg", "abs_max", "KL"], choices=ALGOS,
                   help="algorithms the search tries, in this order (KL, last by default, is slow: paddle "
                        "computes it in Python)")
    s.add_argument("--skip_layers", default="none",
                   help="ops kept FP32: none, auto (the most sensitive, until --min_agreement on the search "
                        "texts), N (the N most sensitive) or names (L3.ffn2,L0.q,... or tensor names)")
    s.add_argument("--max_skip", type=int, default=12, help="most ops --skip_layers auto keeps FP32")
    s.add_argument("--search_examples", type=int, default=1000, help="agreement texts set aside for the search")
    s.add_argument("--sensitivity_examples", type=int, default=300,
                   help="search texts each one-op sensitivity trial runs on (48 trials for a 6-layer BERT)")
    s.add_argument("--search_budget", type=float, default=900.0,
                   help="seconds the search and the sensitivity may take, half each when both run (a trial "
                        "that would overrun is not started, and listed)")
    s.add_argument("--latency_batch", type=int, default=16, help="batch size of the latency printed per trial")
    t = p.add_argument_group("quantization-aware distillation (utils/qat.py), before the quantization")
    t.add_argument("--qat_steps", type=int, default=0,
                   help="fine-tune the FP32 weights this many steps so that the model with every quantized op "
                        "simulated reproduces the FP32 model, then quantize the tuned weights (0: off)")
    t.add_argument("--qat_model", default=None,
                   help="the dynamic-graph sub-model of --model_prefix (export_model.py's --sub_model_output_dir)")
    t.add_argument("--qat_learning_rate", type=float, default=2e-5)
    t.add_argument("--qat_batch_size", type=int, default=16)
    t.add_argument("--qat_save_steps", type=int, default=100,
                   help="checkpoint the tuning every N steps into OUTPUT_PREFIX.qat/")
    t.add_argument("--resume", action="store_true",
                   help="continue the interrupted tuning of this --output_prefix from OUTPUT_PREFIX.qat/ (the "
                        "same flags; without a checkpoint it starts from step 0)")
    t.add_argument("--debug_qat_exit_after_step", type=int, default=-1, help=argparse.SUPPRESS)
    p.add_argument("--max_seq_length", type=int, default=None, help="default: the exported model's")
    p.add_argument("--dev_ratio", type=float, default=None,
                   help="NER data without a dev file: the share of train that is dev (default: the slice the "
                        "model's training held out, from its info.json data_split; else 0.1)")
    p.add_argument("--split_long", action="store_true", default=None,
                   help="NER: split sentences longer than --max_seq_length into windows (default: as the model's "
                        "training did, from its info.json data_split; else truncate)")
    p.add_argument("--eval_batch_size", type=int, default=32)
    p.add_argument("--threads", type=int, default=2, help="CPU threads of the evaluation predictors")
    p.add_argument("--seed", type=int, default=0, help="which training examples calibrate")
    args = p.parse_args(argv)
    sl = args.skip_layers.strip()
    args.skip_layers = "none" if sl.isdigit() and int(sl) == 0 else sl
    args.sensitivity = args.skip_layers == "auto" or args.skip_layers.isdigit()
    args.use_search_texts = args.search or args.sensitivity
    check_args(args)
    return args


def check_args(args):
    for flag in ("batch_num", "batch_size", "eval_batch_size", "threads", "search_examples", "latency_batch",
                 "max_skip", "sensitivity_examples"):
        if getattr(args, flag) <= 0:
            raise UserError(f"--{flag} must be positive, got {getattr(args, flag)}")
    if args.agreement_examples is not None and args.agreement_examples <= 0:
        raise UserError(f"--agreement_examples must be positive, got {args.agreement_examples}")
    if not 0.0 < args.hist_percent <= 1.0:
        raise UserError(f"--hist_percent must be in (0, 1], got {args.hist_percent}")
    if args.max_seq_length is not None and args.max_seq_length < 3:
        raise UserError(f"--max_seq_length must be at least 3, got {args.max_seq_length}")
    if args.dev_ratio is not None and not 0 < args.dev_ratio < 1:
        raise UserError(f"--dev_ratio must be in (0, 1), got {args.dev_ratio}")
    if not np.isfinite(args.max_drop):
        raise UserError(f"--max_drop must be a number, got {args.max_drop}")
    if not 0.0 <= args.min_agreement <= 1.0:
        raise UserError(f"--min_agreement must be in [0, 1], got {args.min_agreement}")
    if not args.search_budget > 0:
        raise UserError(f"--search_budget must be positive seconds, got {args.search_budget}")
    for flag in ("calibration_file", "agreement_file"):
        path = getattr(args, flag)
        if path is not None and not os.path.isfile(path):
            raise UserError(f"--{flag}: {path}: file not found")
    if args.qat_steps < 0 or args.qat_batch_size <= 0 or not args.qat_learning_rate > 0 or args.qat_save_steps <= 0:
        raise UserError("--qat_steps must be >= 0, --qat_batch_size, --qat_learning_rate and --qat_save_steps "
                        "positive")
    if args.resume and not args.qat_steps:
        raise UserError("--resume continues an interrupted quantization-aware distillation: give its --qat_steps "
                        "and --qat_model (the rest of quantize.py is quick and simply reruns)")
    if args.qat_steps and not args.qat_model:
        raise UserError("--qat_steps needs --qat_model: the dynamic-graph sub-model export_model.py wrote with "
                        "--model_prefix (its --sub_model_output_dir)")
    if args.qat_model and not os.path.isdir(args.qat_model):
        raise UserError(f"--qat_model: {args.qat_model}: not a directory")
    if os.path.abspath(args.output_prefix) == os.path.abspath(args.model_prefix):
        raise UserError("--output_prefix must differ from --model_prefix (the FP32 model is the reference)")


# the flags that decide the tuning: a --resume must give the interrupted run's
TUNING_FLAGS = ("model_prefix", "qat_model", "data_dir", "calibration_file", "agreement_file", "agreement_examples",
                "search_examples", "batch_num", "batch_size", "algo", "hist_percent", "weight_quantize_type", "search",
                "search_algos", "skip_layers", "max_skip", "sensitivity_examples", "search_budget", "min_agreement",
                "quantize_head", "max_seq_length", "seed", "qat_steps", "qat_learning_rate", "qat_batch_size",
                "dev_ratio", "split_long")
RUN_FILE = "run.json"   # in OUTPUT_PREFIX.qat/: those flags and the search's choice
PATH_FLAGS = ("model_prefix", "qat_model", "data_dir", "calibration_file", "agreement_file")


def tuning_flags(args):
    return {k: (os.path.abspath(getattr(args, k)) if k in PATH_FLAGS and getattr(args, k) else getattr(args, k))
            for k in TUNING_FLAGS}


def check_checkpoint(args):
    """The interrupted tuning's record (its flags and the search's choice)
    when --resume continues one, else None; a UserError for a checkpoint
    left without --resume or one of other flags.  Nothing is touched."""
    if not args.qat_steps:
        return None
    from utils.qat import checkpoint_dir
    from utils.jsonfile import read_json
    ckpt = checkpoint_dir(args.output_prefix)
    if not os.path.lexists(ckpt):
        return None
    if not args.resume:
        raise UserError(f"{ckpt}: the checkpoint of an interrupted quantization-aware distillation for this "
                        f"--output_prefix; add --resume to continue it (same flags), or remove it to start over")
    record = read_json(os.path.join(ckpt, RUN_FILE), "--resume: the tuning's record", want_object=True)
    saved, now = record.get("flags", {}), tuning_flags(args)
    differ = [k for k in TUNING_FLAGS if saved.get(k) != now[k]]
    if differ:
        raise UserError(f"--resume: {ckpt} was tuned with other flags: "
                        + ", ".join(f"--{k} {saved.get(k)!r} there, {now[k]!r} now" for k in differ)
                        + " (resume with the interrupted run's flags, or remove the checkpoint to start over)")
    return record


def base_recipe(args):
    return {"algo": args.algo, "batch_num": args.batch_num, "weight_quantize_type": args.weight_quantize_type,
            "hist_percent": args.hist_percent}


def resolve_names(names, sites):
    """--skip_layers names -> site names (a site's name or its tensor), or a UserError."""
    by_key = {s["key"]: s["name"] for s in sites if not s["head"]}
    known = {s["name"] for s in sites if not s["head"]}
    out = []
    for n in (x.strip() for x in names.split(",") if x.strip()):
        if n not in known and n not in by_key:
            raise UserError(f"--skip_layers: no quantized op named {n!r} (known: {', '.join(sorted(known))})")
        out.append(n if n in known else by_key[n])
    return out


def named_skips(args, sites):
    """The ops --skip_layers names (empty for none / auto / N)."""
    if args.skip_layers in ("none", "auto") or args.skip_layers.isdigit():
        return []
    return resolve_names(args.skip_layers, sites)


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


def quantize_and_judge(args, data, fp32, sites, work, resumed=None):
    """Search (if asked), quantize with the chosen recipe, run the guard.
    ``resumed``: the interrupted tuning's record (its choice is reused).
    Returns (INT8 prefix in ``work``, summary, reasons to refuse)."""
    feed_names = fp32.get_input_names()
    if resumed is not None:
        recipe, fp32_sites, search = resumed["recipe"], resumed["fp32_sites"], resumed["search"]
        print(f"--resume: the interrupted run's recipe {quant_search.describe(recipe)}, ops kept FP32: "
              f"{', '.join(fp32_sites) or '-'}", flush=True)
    else:
        # the search (and the sensitivity) judge the original model: a tuned model quantized one op at a time is
        # mostly the tuned FP32 model, which differs from the original by design
        recipe, fp32_sites, search = quant_search.choose(args, data, feed_names, work, fp32, sites,
                                                          base_recipe(args), named_skips(args, sites))
    source, qat_record = args.model_prefix, None
    if args.qat_steps:   # tune the FP32 weights for that recipe and those FP32 ops; the guard compares with --model_prefix
        from utils import qat
        source = os.path.join(work, "qat", "model")
        record = {"flags": tuning_flags(args), "recipe": recipe, "fp32_sites": fp32_sites, "search": search}
        checkpoints = qat.Checkpoints(qat.checkpoint_dir(args.output_prefix), args.qat_save_steps,
                                      resume=resumed is not None, exit_after=args.debug_qat_exit_after_step,
                                      record=(RUN_FILE, record))
        qat_record = qat.tune(args.qat_model, fp32, data, recipe, fp32_sites, source, steps=args.qat_steps,
                              learning_rate=args.qat_learning_rate, batch_size=args.qat_batch_size, seed=args.seed,
                              checkpoints=checkpoints)
    if source != args.model_prefix:
        # the tuned model is a new export: the same ops in the same order, under other tensor names
        sites = quant_ptq.matching_sites(sites, source)
    by_name = {s["name"]: s for s in sites}
    skip = set() if args.quantize_head else set(quant_ptq.head_skip(sites))
    skip |= {by_name[n]["key"] for n in fp32_sites}
    t0 = time.time()
    batches = data.calibration_batches(recipe["batch_num"], args.batch_size)
    prefix = quant_ptq.run_ptq(source, recipe, batches, feed_names, os.path.join(work, "final"), skip,
                               args.with_observers, args.quant_format == "qdq")
    calib_seconds = time.time() - t0
    program = quant_ptq.inspect_program(prefix)
    if not program["quant_ops"]:
        raise SystemExit("error: the quantized program holds no quantize/dequantize op: quantization did "
                         "nothing (no matmul/mul op in the model?); nothing written")
    logger.info("evaluating FP32 (oneDNN) and INT8 (oneDNN int8) on %s and %d held-out texts",
                ", ".join(f"{s} ({len(f)})" for s, f in data.dev.items()), len(data.held_out))
    summary, reasons = quant_guard.measure(args, data, fp32, prefix)
    # what the predictor really runs in INT8: oneDNN's passes keep some quantized ops FP32
    run = quant_ptq.executed_int8(prefix, sites)
    body = {s["name"] for s in sites if not s["head"]} - set(fp32_sites)
    summary["onednn"] = {"int8_sites": len([n for n in run["int8"] if n in body]), "quantized_sites": len(body),
                         "fp32_sites": [n for n in run["fp32"] if n in body]}
    summary.update(
        fp32_sites=fp32_sites, search=search, program=program, qat=qat_record,
        calibration=dict(recipe, batch_num=len(batches), batch_size=args.batch_size,
                         examples=int(sum(len(b[0]) for b in batches)),
                         source=args.calibration_file or "training split", quant_format=args.quant_format,
                         with_observers=args.with_observers, fp32_op_inputs=sorted(skip),
                         hist_percent=recipe["hist_percent"] if recipe["algo"] == "hist" else None,
                         quantized_ops=QUANTIZABLE_OPS, seconds=calib_seconds),
        bytes={"fp32": quant_ptq.model_bytes(args.model_prefix), "int8": quant_ptq.model_bytes(prefix)})
    return prefix, summary, reasons


def write_model(args, info, tok_src, tmp_prefix, summary, forced, max_len):
    """Publish the INT8 model, its info file and the tokenizer next to --output_prefix."""
    out_prefix = os.path.abspath(args.output_prefix)
    tok_name = os.path.basename(out_prefix) + inference.TOKENIZER_SUFFIX
    new_info = dict(info, int8=True, fp32_model=os.path.abspath(args.model_prefix), tokenizer_dir=tok_name,
                    max_seq_length=max_len, quantization=dict(summary, forced=forced))
    inference.write_info(tmp_prefix, new_info)
    shutil.copytree(tok_src, tmp_prefix + inference.TOKENIZER_SUFFIX)
    publish_prefix(tmp_prefix, out_prefix)
    return out_prefix


def main(argv=None):
    args = parse_args(argv)
    from utils.quant_paddle3 import check_line
    check_line()  # paddle 3: one error line naming the 2.6.2 line (no working INT8 path there)
    info, tok_src = check_model(args.model_prefix)  # cheap checks first: no library import yet
    if not os.path.isdir(args.data_dir):
        raise UserError(f"--data_dir: '{args.data_dir}' is not a directory")
    parallel.setup_logging()
    from utils.modeling import load_tokenizer
    max_len = args.max_seq_length or int(info.get("max_seq_length") or 128)
    data = QuantData(args, info, load_tokenizer(tok_src), max_len)  # every input check before any write
    sites = quant_ptq.quant_sites(args.model_prefix)
    named_skips(args, sites)
    resumed = check_checkpoint(args)
    if args.resume and resumed is None:
        logger.warning("--resume: no checkpoint of a tuning at %s.qat, starting from the beginning",
                       os.path.abspath(args.output_prefix))
    fp32 = inference.create_predictor(args.model_prefix, threads=args.threads, mkldnn=True)
    out_dir = os.path.dirname(os.path.abspath(args.output_prefix))
    made_dirs = runs.make_dirs(out_dir)
    work = tempfile.mkdtemp(prefix=".quantize-", dir=out_dir)
    written = False
    try:
        tmp_prefix, summary, reasons = quantize_and_judge(args, data, fp32, sites, work, resumed)
        if args.qat_steps:   # judged: the tuning is done with, whatever the verdict
            from utils.qat import checkpoint_dir
            shutil.rmtree(checkpoint_dir(args.output_prefix), ignore_errors=True)
        quant_guard.report(summary)
        if reasons and not args.force:
            print(json.dumps(summary), flush=True)
            raise SystemExit(f"error: guard refused the INT8 model: {'; '.join(reasons)}; nothing written (try "
                             f"--search, --skip_layers auto, more --batch_num, or --force)")
        if reasons:
            logger.warning("%s: writing the INT8 model anyway (--force)", "; ".join(reasons))
        out_prefix = write_model(args, info, tok_src, tmp_prefix, summary, bool(reasons), max_len)
        written = True
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not written:
            runs.remove_empty_dirs(made_dirs)
    b = summary["bytes"]
    logger.info("wrote %s (.pdmodel/.pdiparams/.info.json, tokenizer): %.1f MB vs FP32 %.1f MB; FP32 ops: %s",
                out_prefix, b["int8"] / 1e6, b["fp32"] / 1e6, ", ".join(summary["fp32_sites"]) or "head only")
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    run_main(main)
