"""Convert an exported static model to ONNX (paddle2onnx) and check it with onnxruntime.

    python export_onnx.py --model_prefix out/SST-2-ofa/static_0.5/model --output out/model_0.5.onnx \
        --data_dir glue_data

The ONNX model is run with onnxruntime (CPU) next to Paddle Inference (CPU,
oneDNN off) on the task's dev inputs (``--data_dir``), on given text
(``--check_text``), or, with neither, on random token ids of the model's
vocabulary (random lengths, padded, both segments).  The largest absolute
difference of the outputs must be <= ``--tolerance`` (1e-4 for FP32);
otherwise the file is removed and the exit status is 1.  The figure is
printed and written with the settings into ``FILE.onnx.json``.

Needs ``onnxruntime`` and ``paddle2onnx`` (test/deploy dependencies, not in
requirements.txt): ``pip install -r requirements-test.txt`` on the paddle 2.6
line (paddle2onnx 1.3.1); requirements-paddle3-test.txt for paddle 3
(paddle2onnx 2.1.0: 1.3.1 cannot parse paddle 3's PIR programs).  paddle2onnx
2.x always runs with ``optimize_tool="onnxoptimizer"``: its default tool
pip-installs packages during the conversion (it upgraded numpy to 2.x and
broke paddleslim).
"""
import utils  # noqa: F401  (first: stack fixes before paddle is imported)

import argparse
import json
import logging
import os
import time

import numpy as np

from utils import inference, parallel
from utils.compat import paddle2onnx_export_kwargs
from utils.batching import is_sentencepiece, pad_features, text_batches
from utils.check_inputs import load_check_texts
from utils.errors import UserError, run_main
from utils.publish import staged_file, write_json_atomic

logger = logging.getLogger("bert_suite")


def install_hint():
    from utils.compat import paddle_major
    if paddle_major() >= 3:
        return "pip install -r requirements-paddle3-test.txt -c constraints-paddle3.txt (onnxruntime, paddle2onnx 2.1.0)"
    return "pip install -r requirements-test.txt -c constraints.txt (onnxruntime, paddle2onnx 1.3.1)"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_prefix", required=True, help="static model written by export_model.py")
    p.add_argument("--output", required=True, help="the .onnx file to write")
    p.add_argument("--opset", type=int, default=13, help="ONNX opset (paddle2onnx raises it if an op needs more)")
    p.add_argument("--data_dir", default=None, help="the task's data: the check runs on dev inputs")
    p.add_argument("--check_text", default=None, help="file of raw text (one example a line, TAB for pairs)")
    p.add_argument("--check_examples", type=int, default=64)
    p.add_argument("--max_seq_length", type=int, default=None, help="default: the exported model's")
    p.add_argument("--tolerance", type=float, default=1e-4, help="largest accepted max |ONNX - Paddle|")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0, help="of the generated token ids")
    args = p.parse_args(argv)
    if not args.output.endswith(".onnx"):
        raise UserError(f"--output must end in .onnx, got {args.output}")
    if args.check_examples <= 0 or args.threads <= 0:
        raise UserError("--check_examples and --threads must be positive")
    if args.opset < 7:
        raise UserError(f"--opset must be at least 7, got {args.opset}")
    if args.max_seq_length is not None and args.max_seq_length < 3:
        raise UserError(f"--max_seq_length must be at least 3, got {args.max_seq_length}")
    if not args.tolerance >= 0:
        raise UserError(f"--tolerance must be >= 0, got {args.tolerance}")
    return args


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise UserError(f"onnxruntime is not installed; it checks the ONNX model: {install_hint()}") from None
    return onnxruntime


def convert(prefix, out_file, opset):
    """paddle2onnx's Python API; returns its version."""
    try:
        import paddle2onnx
    except ImportError:
        raise UserError(f"paddle2onnx is not installed: {install_hint()}") from None
    # paddle2onnx 2.x would pip-install packages with its default optimizer: utils/compat.py fix 10
    kwargs = paddle2onnx_export_kwargs(
        paddle2onnx.export, save_file=out_file, opset_version=opset, auto_upgrade_opset=True, verbose=False,
        enable_onnx_checker=True, enable_optimize=True, deploy_backend="onnxruntime")
    try:
        paddle2onnx.export(inference.model_file(prefix), prefix + ".pdiparams", **kwargs)
    except Exception as e:  # the C++ converter raises RuntimeError/ValueError with its message
        raise SystemExit(f"error: paddle2onnx could not convert {prefix}: {e}")
    if not os.path.isfile(out_file) or os.path.getsize(out_file) == 0:
        raise SystemExit(f"error: paddle2onnx wrote no model for {prefix}")
    return getattr(paddle2onnx, "__version__", "?")


def random_batches(n, tokenizer, max_len, seed, batch_size=16):
    """Pairs of random vocabulary ids of random lengths in the tokenizer's
    framing (BERT: [CLS] a [SEP] b [SEP], segments 0 and 1; XLM-R
    SentencePiece: <s> a </s></s> b </s>, segments 0), every batch padded
    with the tokenizer's pad id."""
    rng = np.random.RandomState(seed)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    spm = is_sentencepiece(tokenizer)
    special = {tokenizer.pad_token_id, cls, sep}
    vocab = np.array([i for i in range(len(tokenizer)) if i not in special])
    n_special = 4 if spm else 3
    rows = []
    for _ in range(n):
        length = int(rng.randint(n_special, max_len + 1))
        body = rng.choice(vocab, size=length - n_special).tolist() if length > n_special else []
        cut = int(rng.randint(0, len(body) + 1))
        if spm:
            ids = [cls] + body[:cut] + [sep, sep] + body[cut:] + [sep]
            seg = [0] * len(ids)
        else:
            ids = [cls] + body[:cut] + [sep] + body[cut:] + [sep]
            seg = [0] * (cut + 2) + [1] * (len(body) - cut + 1)
        rows.append({"input_ids": ids[:max_len], "token_type_ids": seg[:max_len]})
    return [pad_features(rows[k:k + batch_size], tokenizer.pad_token_id) for k in range(0, n, batch_size)]


def check_batches(args, info):
    from utils.modeling import load_tokenizer
    tok_dir = os.path.join(os.path.dirname(os.path.abspath(args.model_prefix)), info.get("tokenizer_dir") or "")
    if not info.get("tokenizer_dir") or not os.path.isdir(tok_dir):
        raise UserError(f"{args.model_prefix}{inference.INFO_SUFFIX}: tokenizer directory {tok_dir} is missing")
    tokenizer = load_tokenizer(tok_dir)
    max_len = args.max_seq_length or int(info.get("max_seq_length") or 128)
    if args.data_dir or args.check_text:
        texts = load_check_texts(info, args.check_examples, args.check_text, data_dir=args.data_dir)
        return text_batches(tokenizer, texts, max_len), ("text" if args.check_text else "dev data")
    logger.warning("no --data_dir or --check_text: the check runs on random token ids")
    return random_batches(args.check_examples, tokenizer, max_len, args.seed), "random token ids"


def compare(sess, paddle_pred, batches):
    """Run both models on every batch: (max |ONNX - Paddle| per batch, batch shapes)."""
    feed_names = paddle_pred.get_input_names()
    onnx_inputs = [i.name for i in sess.get_inputs()]
    if sorted(onnx_inputs) != sorted(feed_names):
        raise SystemExit(f"error: the ONNX model's inputs {onnx_inputs} are not the Paddle model's {feed_names}")
    diffs, shapes = [], []
    for ids, seg in batches:
        ref = inference.run_predictor(paddle_pred, ids, seg)
        got = sess.run(None, dict(zip(feed_names, (ids, seg))))[0]
        if got.shape != ref.shape:
            raise SystemExit(f"error: ONNX output shape {got.shape} != Paddle's {ref.shape} for input {ids.shape}")
        diffs.append(float(np.abs(got.astype(np.float64) - ref).max()))
        shapes.append(list(ids.shape))
    return diffs, shapes


def main(argv=None):
    args = parse_args(argv)
    inference.require_static(args.model_prefix)
    info = inference.read_info(args.model_prefix)
    if info.get("int8"):
        raise UserError(f"--model_prefix {args.model_prefix} is an INT8 model (quantize.py); export the FP32 "
                        f"model (its 'fp32_model': {info.get('fp32_model')})")
    if args.data_dir and not os.path.isdir(args.data_dir):
        raise UserError(f"--data_dir: '{args.data_dir}' is not a directory")
    ort = import_onnxruntime()
    parallel.setup_logging()
    paddle_pred = inference.create_predictor(args.model_prefix, threads=args.threads, mkldnn=False)
    batches, source = check_batches(args, info)

    out = os.path.abspath(args.output)
    with staged_file(out) as tmp:   # published only when the check passes
        t0 = time.time()
        p2o_version = convert(args.model_prefix, tmp, args.opset)
        convert_seconds = time.time() - t0
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        sess = ort.InferenceSession(tmp, sess_options=so, providers=["CPUExecutionProvider"])
        diffs, shapes = compare(sess, paddle_pred, batches)
        worst = max(diffs)
        report = {
            "onnx_file": out, "model_prefix": os.path.abspath(args.model_prefix), "opset": args.opset,
            "max_abs_diff": worst, "tolerance": args.tolerance, "passed": worst <= args.tolerance,
            "examples": int(sum(s[0] for s in shapes)), "inputs": source, "batch_shapes": shapes,
            "reference": "Paddle Inference CPU, oneDNN off", "paddle2onnx": p2o_version,
            "onnxruntime": ort.__version__, "onnx_bytes": os.path.getsize(tmp),
            "convert_seconds": convert_seconds, "task_name": info.get("task_name"),
        }
        print(f"ONNX vs Paddle Inference on {report['examples']} examples ({source}): max |diff| {worst:.3e} "
              f"(tolerance {args.tolerance:g})", flush=True)
        if worst > args.tolerance:
            print(json.dumps(report), flush=True)
            for stale in (out, out + ".json"):  # an older export at this path would pass for this model
                if os.path.isfile(stale):
                    os.remove(stale)
            raise SystemExit(f"error: the ONNX model differs from the Paddle model by {worst:.3e} "
                             f"(> --tolerance {args.tolerance:g}); {out} not written")
    write_json_atomic(out + ".json", report)
    logger.info("wrote %s (%.1f MB) and %s.json", out, report["onnx_bytes"] / 1e6, out)
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    run_main(main)
