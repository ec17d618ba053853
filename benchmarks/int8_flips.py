"""Which texts several INT8 models of one FP32 classifier flip, and why.

    python benchmarks/int8_flips.py --fp32 out/demo/compress/candidates/w0.5000/static/model \
        --data_dir out/int8_qat/test --int8 qat=out/int8_qat/int8/model skip4=out/int8_skip4/int8/model \
        [--seen_dir out/demo/data] [--output flips.json]

``--data_dir`` is a task data dir whose dev split is scored (the ``test``
directory ``benchmarks/int8_guard.py`` writes in its workdir).  For each
INT8 model: its flips against the FP32 model and the median / p90 of the
|change of the FP32 logit margin|; then how many texts flip under any of
the models and under all of them, and how many texts are near-ties (FP32
margin below 0.01 / 0.05 / 0.13 / 0.2).  Few shared flips and many
near-ties mean the flips are a draw from the texts near the boundary, not
texts one recipe handles badly.  ``--seen_dir`` scores the same figures on
the *train* split of a data dir (the demo's ``data``: the texts calibration
and the tuning drew from) to show how the error generalises.  The FP32
model also runs at batch 1 and 7 to show whether its own logits depend on
batching (padding).
Classification models only; paddle 2.6 (the INT8 line).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import utils  # noqa: E402,F401  (first: stack fixes before paddle is imported)

import argparse  # noqa: E402
import json  # noqa: E402

import numpy as np  # noqa: E402

from utils.errors import UserError, run_main  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fp32", required=True, help="the FP32 static model prefix")
    p.add_argument("--int8", required=True, nargs="+", metavar="NAME=PREFIX",
                   help="INT8 models of it (quantize.py), each named")
    p.add_argument("--data_dir", required=True, help="task data dir; its dev split is scored")
    p.add_argument("--seen_dir", default=None, help="a data dir whose train split (the tuning texts) is scored the same way")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--output", default=None, help="JSON file for the numbers (default: none)")
    args = p.parse_args(argv)
    if args.batch_size < 1:
        raise UserError(f"--batch_size {args.batch_size}: must be >= 1")
    runs = {}
    for spec in args.int8:
        name, sep, prefix = spec.partition("=")
        if not sep or not name or not prefix:
            raise UserError(f"--int8 {spec!r}: expected NAME=PREFIX")
        if name in runs:
            raise UserError(f"--int8: the name {name!r} is given twice")
        runs[name] = prefix
    args.runs = runs
    for flag, prefix in [("--fp32", args.fp32)] + [(f"--int8 {n}", p) for n, p in runs.items()]:
        for ext in (".pdmodel", ".pdiparams"):
            if not os.path.isfile(prefix + ext):
                raise UserError(f"{flag}: no model file {prefix + ext}")
    for flag, d in (("--data_dir", args.data_dir), ("--seen_dir", args.seen_dir)):
        if d is not None and not os.path.isdir(d):
            raise UserError(f"{flag}: no directory {d}")
    if args.output and os.path.isdir(args.output):
        raise UserError(f"--output {args.output}: is a directory; give a JSON file name")
    return args


def score_split(args, data_dir, split, fp, predictors, info, tok):
    from utils import quant_guard
    from utils.data import load_glue
    from utils.quant_eval import QuantData
    from utils.tasks import get_task
    data = QuantData(argparse.Namespace(model_prefix=args.fp32, data_dir=data_dir), info, tok,
                     int(info.get("max_seq_length") or 128), pools=False)
    if split == "dev":
        feats = data.dev["dev"]
    else:
        feats = data.encode(load_glue(get_task(info["task_name"]), data_dir, (split,))[split])
    ref = np.stack(data.outputs(fp, feats, args.batch_size)[0])
    top = ref.argmax(1)
    runs = {name: np.stack(data.outputs(pred, feats, args.batch_size)[0]) for name, pred in predictors.items()}
    out = {"examples": len(ref), "batch_size": args.batch_size, "runs": {}}
    for name, new in runs.items():
        # flips, and the change of the FP32 top-1 minus runner-up margin (the margin a flip has to cross)
        h = quant_guard.error_headroom(ref, new)
        out["runs"][name] = {"flips": h["flips"], "margin_error_p50": h["error"]["p50"],
                             "margin_error_p90": h["error"]["p90"]}
    out["overlap"] = quant_guard.flip_overlap(ref, runs)
    out["fp32_batching"] = {}
    for bs in (1, 7):
        other = np.stack(data.outputs(fp, feats, bs)[0])
        out["fp32_batching"][bs] = {"max_abs_logit_diff": float(np.abs(other - ref).max()),
                                    "flips": int((other.argmax(1) != top).sum())}
    return out


def show(title, res):
    print(f"\n{title}: {res['examples']} texts")
    for name, r in res["runs"].items():
        print(f"  {name:<20} flips {r['flips']:>4}   margin error median {r['margin_error_p50']:.4f}  "
              f"p90 {r['margin_error_p90']:.4f}")
    o = res["overlap"]
    print(f"  flipped by any model: {o['union']}; by every model: {o['in_every_run']}")
    print("  near-ties (FP32 margin below): " + ", ".join(f"{t}: {n}" for t, n in o["margin_below"].items()))
    print(f"  FP32 at batch 1 / 7 against batch {res['batch_size']}: " + "; ".join(
        f"b{bs} max |logit diff| {v['max_abs_logit_diff']:.2e}, {v['flips']} flips"
        for bs, v in res["fp32_batching"].items()))


def main(argv=None):
    args = parse_args(argv)
    from utils import inference
    from utils.modeling import load_tokenizer
    info = inference.read_info(args.fp32)
    if info.get("task_type", "classification") != "classification":
        raise UserError(f"--fp32 {args.fp32}: a {info.get('task_type')} model; this script reads classification logits")
    tok = load_tokenizer(os.path.join(os.path.dirname(os.path.abspath(args.fp32)), info["tokenizer_dir"]))
    fp = inference.create_predictor(args.fp32)
    predictors = {name: inference.create_predictor(prefix) for name, prefix in args.runs.items()}
    result = {"fp32": args.fp32, "int8": args.runs}
    for key, d, split in (("unseen", args.data_dir, "dev"), ("seen", args.seen_dir, "train")):
        if d is None:
            continue
        result[key] = score_split(args, d, split, fp, predictors, info, tok)
        show(f"{key}: {split} split of {d}", result[key])
    if args.output:
        tmp = args.output + ".tmp"
        with open(tmp, "w") as f:
            json.dump(result, f, indent=2)
        os.replace(tmp, args.output)
        print(f"wrote {args.output}")
    return result


if __name__ == "__main__":
    run_main(main)
