"""The 12-layer multilingual teacher on the English demo task (issue 14,
item 4 and its depth part; the 12-layer row of issue 19's INT8 recipe):
multilingual-e5-small, vocabulary-pruned to the demo's texts, fine-tuned,
then compressed in depth (12 -> 6 layers) and width, INT8, and timed.

    python benchmarks/e5_sentiment.py [--output_dir out/e5_sentiment] [--teacher_steps 40] [--ofa_steps 20]

Stages (each one of the suite's scripts in its own process, except the
first; a stage whose output is there is skipped, so a rerun resumes;
``--stages`` picks some):

1. data     demo.py's prepare_data: the Amazon review snippets in the SST-2
            layout (2,000 train, 722 dev, 5,084 unlabelled texts)
2. vocab    prune.py --prune_vocab of the converted e5 to train + dev +
            unlabelled text (prune before fine-tuning: 96M of its 117.6M
            parameters are word embeddings)
3. teacher  run_glue.py on the pruned e5 (length 64, batch 32): 40 steps at
            lr 5e-5, then 40 more at 1e-4 from that checkpoint (the first
            round alone still predicted the majority class)
4. ofa      run_glue_ofa.py --data_aug, widths 1 and 1/2 at depth 1/2
            (DynaBERT's layers 0, 2, ..., 10)
5. export   export_model.py (checked) of the teacher, depth 1/2 and
            width 1/2 x depth 1/2
6. int8     quantize.py of width 1/2 x depth 1/2 with its guard; a refused
            model is written again with --force (for its latency only) and
            the table says so
7. metric   benchmarks/static_dev_metric.py: dev accuracy of every static
            model, run as deployed
8. bench    benchmark.py at batch 1 and 16, length 128
9. table    the table below, from the files the stages wrote

``--minilm`` adds demo.py's MiniLM teacher (run_glue.py, 2 epochs, lr 1e-4)
and its row.  Stage wall times go to OUT/times.json and into the table.
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _p in (ROOT, os.path.join(ROOT, "benchmarks")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import utils  # noqa: F401,E402  (before paddle: stack fixes)

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

from utils.jsonfile import read_json  # noqa: E402
from utils.publish import write_json_atomic  # noqa: E402

STAGES = ("data", "vocab", "minilm", "teacher", "ofa", "export", "int8", "metric", "bench", "table")
# (name, source under OUT, width, depth): the exported static models
EXPORTS = (("teacher", "teacher/best", "1.0", "1.0"),
           ("d0.5", "ofa/width_1.0000_depth_0.5000", "1.0", "1/2"),
           ("w0.5_d0.5", "ofa/width_0.5000_depth_0.5000", "1/2", "1/2"))
INT8 = ("w0.5_d0.5", "w0.5_d0.5_int8")
LABELS = {"minilm": "MiniLM-L6 teacher (demo.py's)", "teacher": "e5 teacher, vocab-pruned (12 layers)",
          "d0.5": "depth 1/2 (layers 0, 2, .., 10)", "w0.5_d0.5": "width 1/2 x depth 1/2",
          "w0.5_d0.5_int8": "width 1/2 x depth 1/2, INT8"}
LAYERS = {"minilm": 6, "teacher": 12, "d0.5": 6, "w0.5_d0.5": 6, "w0.5_d0.5_int8": 6}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output_dir", default=os.path.join(ROOT, "out", "e5_sentiment"))
    p.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    p.add_argument("--minilm", action="store_true", help="also fine-tune demo.py's MiniLM teacher (its row)")
    p.add_argument("--max_train", type=int, default=2000, help="demo.py --max_train")
    p.add_argument("--teacher_steps", type=int, default=40, help="run_glue.py --max_steps of each round (63 = one "
                   "epoch)")
    p.add_argument("--teacher_lrs", nargs="+", type=float, default=[5e-5, 1e-4],
                   help="one fine-tuning round per learning rate, each from the previous round's best (round k > 1 "
                        "with --seed k: other batches)")
    p.add_argument("--ofa_steps", type=int, default=20)
    p.add_argument("--ofa_lr", type=float, default=1e-4)
    p.add_argument("--repeats", type=int, default=30, help="benchmark.py --repeats")
    args = p.parse_args(argv)
    if "minilm" in args.stages and not args.minilm:
        args.stages.remove("minilm")
    return args


def run(log, script, *argv, may_fail=False):
    """Run one of the suite's scripts, echo and keep its stdout; (exit code, stdout lines)."""
    cmd = [sys.executable, os.path.join(ROOT, script)] + [str(a) for a in argv]
    print("$ " + " ".join(cmd[1:]), flush=True)
    lines = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT) as proc:
        for line in proc.stdout:
            sys.stdout.write(line)
            lines.append(line)
    with open(log, "a", encoding="utf-8") as f:
        f.write("$ " + " ".join(cmd[1:]) + "\n" + "".join(lines))
    if proc.returncode and not may_fail:
        raise SystemExit(f"error: {script} failed (exit {proc.returncode}); rerun to resume")
    return proc.returncode, lines


def last_json(lines):
    for line in reversed(lines):
        if line.startswith("{"):
            return json.loads(line)
    return None


def stage_data(o, a):
    import demo
    demo.prepare_data(os.path.join(o, "data"), a.max_train)


def stage_vocab(o, a):
    from e5_vocab_prune import converted_e5
    d = os.path.join(o, "data", "SST-2")
    _, lines = run(os.path.join(o, "log.txt"), "prune.py", "--model_name_or_path", converted_e5(),
                   "--output_dir", os.path.join(o, "e5-vocab"), "--prune_vocab", "--vocab_text_column", 1,
                   "--vocab_texts", *(os.path.join(d, f) for f in ("train.tsv", "dev.tsv", "train_aug.tsv")))
    write_json_atomic(os.path.join(o, "vocab.json"), last_json(lines))


def fine_tune(o, model, out, lr, steps):
    run(os.path.join(o, "log.txt"), "run_glue.py", "--task_name", "SST-2", "--model_name_or_path", model,
        "--data_dir", os.path.join(o, "data"), "--output_dir", out, "--learning_rate", lr,
        *steps, "--warmup_proportion", 0.1, "--overwrite_output_dir",
        "--max_seq_length", 64, "--batch_size", 32, "--device", "cpu", "--logging_steps", 10)


def stage_minilm(o, a):
    from utils import assets
    fine_tune(o, assets.converted_minilm(), os.path.join(o, "minilm"), "1e-4",
              ["--num_train_epochs", 2, "--save_steps", 50])


def stage_teacher(o, a):
    src = os.path.join(o, "e5-vocab")
    for k, lr in enumerate(a.teacher_lrs, start=1):
        out = os.path.join(o, "teacher" if k == len(a.teacher_lrs) else f"teacher_r{k}")
        if not os.path.isfile(os.path.join(out, "all_results.json")):
            fine_tune(o, src, out, lr, ["--max_steps", a.teacher_steps, "--save_steps", a.teacher_steps]
                      + (["--seed", k] if k > 1 else []))
        src = os.path.join(out, "best")


def stage_ofa(o, a):
    run(os.path.join(o, "log.txt"), "run_glue_ofa.py", "--task_name", "SST-2",
        "--model_name_or_path", os.path.join(o, "teacher", "best"), "--data_dir", os.path.join(o, "data"),
        "--data_aug", "--output_dir", os.path.join(o, "ofa"), "--width_mult_list", "1.0", "1/2",
        "--depth_mult_list", "1/2", "--max_steps", a.ofa_steps, "--save_steps", a.ofa_steps,
        "--learning_rate", a.ofa_lr, "--warmup_proportion", 0.1, "--overwrite_output_dir",
        "--max_seq_length", 64, "--batch_size", 32, "--device", "cpu", "--logging_steps", 5)


def static_prefix(o, name):
    return os.path.join(o, "export", name, "static", "model")


def stage_export(o, a):
    """Exports the models not exported yet; False if there was none (no time recorded)."""
    exports = EXPORTS + ((("minilm", "minilm/best", "1.0", "1.0"),) if a.minilm else ())
    todo = [e for e in exports if not os.path.isfile(static_prefix(o, e[0]) + ".pdiparams")]
    for name, src, width, depth in todo:
        run(os.path.join(o, "log.txt"), "export_model.py", "--model_name_or_path", os.path.join(o, src),
            "--width_mult", width, "--depth_mult", depth, "--data_dir", os.path.join(o, "data"),
            "--sub_model_output_dir", os.path.join(o, "export", name, "dynamic"),
            "--static_sub_model", static_prefix(o, name), "--max_seq_length", 128)
    return bool(todo)


def stage_int8(o, a):
    src, dst = (static_prefix(o, n) for n in INT8)
    flags = ["--model_prefix", src, "--output_prefix", dst, "--data_dir", os.path.join(o, "data"),
             "--batch_num", 8, "--batch_size", 16]
    code, lines = run(os.path.join(o, "log.txt"), "quantize.py", *flags, may_fail=True)
    guard = dict(last_json(lines) or {}, refused=bool(code))
    if code:
        print("(the guard refused the INT8 model: written again with --force, for its latency only)", flush=True)
        run(os.path.join(o, "log.txt"), "quantize.py", *flags, "--force")
    write_json_atomic(os.path.join(o, "int8.json"), guard)


def present(o, a):
    names = (["minilm"] if a.minilm else []) + [e[0] for e in EXPORTS] + [INT8[1]]
    names = [n for n in names if os.path.isfile(static_prefix(o, n) + ".pdiparams")]
    # the e5 teacher first: benchmark.py's speed-ups are against its first model
    return sorted(names, key=lambda n: n != "teacher")


def exported(o, a):
    names = present(o, a)
    if not names:
        raise SystemExit(f"error: no static model under {o}/export: run the export stage first")
    return names


def stage_metric(o, a):
    names = exported(o, a)
    _, lines = run(os.path.join(o, "log.txt"), "benchmarks/static_dev_metric.py", "--data_dir",
                   os.path.join(o, "data"), "--max_seq_length", 64,
                   "--models", *(static_prefix(o, n) for n in names))
    res = last_json(lines)
    write_json_atomic(os.path.join(o, "metric.json"), {n: res[static_prefix(o, n)]["score"] for n in names})


def stage_bench(o, a):
    names = exported(o, a)
    run(os.path.join(o, "log.txt"), "benchmark.py", "--models", *(static_prefix(o, n) for n in names),
        "--names", *names, "--batch_sizes", 1, 16, "--max_seq_length", 128, "--threads", 2,
        "--repeats", a.repeats, "--output", os.path.join(o, "benchmark"))


def optional_json(path):
    return read_json(path) if os.path.isfile(path) else {}


def stage_table(o, a):
    metric, guard = optional_json(os.path.join(o, "metric.json")), optional_json(os.path.join(o, "int8.json"))
    bench = optional_json(os.path.join(o, "benchmark.json"))
    rows = {(r["model"], r["batch_size"]): r for r in bench.get("rows", [])}
    base = metric.get("teacher")
    print("\n| model | layers | params | dev acc (static) | vs e5 teacher | b=1 | speed-up | b=16 | speed-up |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in present(o, a):
        acc = metric.get(n)
        cells = [LABELS[n], str(LAYERS[n]), _params(rows.get((n, 16))), _num(acc),
                 "" if acc is None or base is None or n == "teacher" else f"{acc - base:+.4f}"]
        for bs in (1, 16):
            r = rows.get((n, bs))
            cells += [f"{r['median_ms']:.1f} ms", f"{r['speedup']:.2f}x"] if r else ["", ""]
        print("| " + " | ".join(cells) + " |")
    if guard:
        ag = guard.get("agreement", {})
        print(f"\nINT8 guard ({'REFUSED, forced for latency' if guard['refused'] else 'accepted'}): dev "
              f"{_num(guard.get('fp32'))} -> {_num(guard.get('int8'))} (drop {_num(guard.get('drop'))}), "
              f"agreement {_num(ag.get('value'))} (dev {_num(ag.get('by_source', {}).get('dev'))}, held-out "
              f"{_num(ag.get('by_source', {}).get('held_out'))}); kept FP32: "
              f"{', '.join(guard.get('calibration', {}).get('fp32_op_inputs', [])) or '-'}")
    rounds = [f"teacher_r{k}" for k in range(1, len(a.teacher_lrs))] + ["teacher"]
    print("fine-tuning rounds (run_glue.py's best dev acc): " + ", ".join(
        f"{r} {_num(optional_json(os.path.join(o, r, 'all_results.json')).get('best_score'))}" for r in rounds))
    times = optional_json(os.path.join(o, "times.json"))
    print("stage wall times: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in times.items()))


def _num(x):
    return "" if x is None else f"{x:.4f}"


def _params(row):
    return f"{row['params'] / 1e6:.2f}M" if row and row.get("params") else ""


DONE = {"data": "data/SST-2/train_aug.tsv", "vocab": "vocab.json", "minilm": "minilm/all_results.json",
        "teacher": "teacher/all_results.json", "ofa": "ofa/width_0.5000_depth_0.5000/config.json",
        "int8": "int8.json", "metric": "metric.json", "bench": "benchmark.json"}


def main(argv=None):
    a = parse_args(argv)
    o = os.path.abspath(a.output_dir)
    os.makedirs(o, exist_ok=True)
    times_path = os.path.join(o, "times.json")
    for name in a.stages:
        if name in DONE and os.path.exists(os.path.join(o, DONE[name])):
            print(f"[e5_sentiment] {name}: done earlier ({DONE[name]})", flush=True)
            continue
        print(f"\n===== [e5_sentiment] {name} =====", flush=True)
        t0 = time.time()
        ran = globals()["stage_" + name](o, a)
        if name != "table" and ran is not False:
            write_json_atomic(times_path, dict(optional_json(times_path), **{name: time.time() - t0}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
