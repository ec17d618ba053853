"""The figures of the pretrained Chinese NER run (benchmarks/msra_demo.sh)
against the targets of issue 13, printed as one table.

    python benchmarks/msra_figures.py --run_dir out/msra_demo [--rounds 3] [--threads 2]

Reads RUN_DIR/teacher (run_msra_ner.py), RUN_DIR/ofa (run_msra_ner_ofa.py)
and the static models RUN_DIR/export/{teacher,w0.75,w0.5,w0.5_int8}/static/model,
then measures two things itself, with Paddle Inference as deployed:

- entity F1 (seqeval) on the whole MSRA test split (RUN_DIR/data) of the
  width-1/2 FP32 and INT8 static models;
- tagging RUN_DIR/tag_10k.txt (about 10,000 characters, written by
  benchmarks/msra_setup.py) in batches of 32 lines: start-up (tokenizer +
  predictor creation) and tagging time (encode, run, decode) apart, each the
  median of --rounds rounds that visit the models in rotating order.

The teacher's learning curve (dev entity F1 against steps, from
teacher/results.json) and its training budget come first.  Writes
RUN_DIR/figures.json.  Targets are printed with "met" / "NOT met"; this is
a report, not a test.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import utils  # noqa: E402,F401

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

from utils import inference, ner_data, ner_encode, ner_metrics  # noqa: E402
from utils.errors import UserError, run_main  # noqa: E402
from utils.modeling import load_tokenizer  # noqa: E402
from utils.jsonfile import read_json  # noqa: E402
from utils.publish import write_json_atomic  # noqa: E402

MODELS = ("teacher", "w0.75", "w0.5", "w0.5_int8")
WIDTH_TAGS = {"teacher": None, "w0.75": "0.7500", "w0.5": "0.5000"}


def prefix_of(run_dir, name):
    return os.path.join(run_dir, "export", name, "static", "model")


def learning_curve(teacher_dir):
    path = os.path.join(teacher_dir, "results.json")
    rows = read_json(path, "teacher results.json") if os.path.isfile(path) else []
    return [(r["step"], r["score"]) for r in rows if "score" in r]


def load_static(prefix, threads):
    t0 = time.perf_counter()
    info = inference.read_info(prefix)
    tok = load_tokenizer(os.path.join(os.path.dirname(os.path.abspath(prefix)), info["tokenizer_dir"]))
    pred = inference.create_predictor(prefix, threads=threads)
    return info, tok, pred, time.perf_counter() - t0


def tag_file(pred, tok, info, lines, batch=32):
    t0 = time.perf_counter()
    for i in range(0, len(lines), batch):
        ner_metrics.predict_lines_batch(pred, tok, lines[i:i + batch], info["label_list"],
                                        info.get("max_seq_length", 128))
    return time.perf_counter() - t0


def static_test_f1(prefix, data_dir, threads, batch_size=32):
    info, tok, pred, _ = load_static(prefix, threads)
    data = ner_data.load_ner(data_dir, 0.01, 42, info["label_list"])
    if "test" not in data.splits:
        raise UserError(f"{data_dir}: no test split")
    feats = ner_encode.encode_ner(data.splits["test"], tok, info.get("max_seq_length", 128), info["label_list"],
                                  split_long=True, name="test")
    import paddle

    def forward(ids, seg):   # evaluate_ner passes paddle tensors and reads a tensor back
        return paddle.to_tensor(inference.run_predictor(pred, ids.numpy(), seg.numpy()))

    res, f1 = ner_metrics.evaluate_ner(forward, {"test": feats},
                                       ner_encode.NerBatcher(tok.pad_token_id), info["label_list"], batch_size)
    return f1


def timings(run_dir, names, rounds, threads):
    with open(os.path.join(run_dir, "tag_10k.txt"), encoding="utf-8") as f:
        lines = [ln.rstrip("\n") for ln in f if ln.strip()]
    start, tag = {n: [] for n in names}, {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            info, tok, pred, s = load_static(prefix_of(run_dir, n), threads)
            start[n].append(s)
            tag[n].append(tag_file(pred, tok, info, lines))
    chars = sum(len(ln) for ln in lines)
    return chars, {n: {"startup_s": statistics.median(start[n]), "tag_s": statistics.median(tag[n]),
                       "tag_runs_s": tag[n]} for n in names}


def check(label, value, ok):
    return f"  {label:<58} {value:<26} {'met' if ok else 'NOT met'}"


def print_targets(n_test, t_f1, widths, speed, f1_int8, f1_fp32):
    """The issue's targets, each with its measured value and met / NOT met."""
    print("targets:")
    split = "the full MSRA test split" if n_test == 5000 else f"{n_test:,} test sentences"
    print(check(f"teacher entity F1 on {split} >= 0.85", f"{t_f1:.4f}", t_f1 >= 0.85))
    for n, limit in (("w0.75", 1.0), ("w0.5", 2.0)):
        if n in widths:
            drop = 100 * (t_f1 - widths[n])
            print(check(f"{n} test F1 within {limit} point(s) of the teacher", f"{widths[n]:.4f} ({drop:.2f} pt below)",
                        drop <= limit))
    print(check("w0.5 static tagging >= 1.6x faster than the teacher", f"x{speed['w0.5']:.2f}", speed["w0.5"] >= 1.6))
    if f1_int8 is not None:
        print(check("w0.5 INT8 tagging >= 2.5x faster than the teacher", f"x{speed['w0.5_int8']:.2f}",
                    speed["w0.5_int8"] >= 2.5))
        drop = 100 * (f1_fp32 - f1_int8)
        print(check("w0.5 INT8 test F1 within 1.0 point of its FP32 model",
                    f"{f1_int8:.4f} vs {f1_fp32:.4f} ({drop:.2f} pt below)", drop <= 1.0))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run_dir", default="out/msra_demo")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    run = a.run_dir
    t_path = os.path.join(run, "teacher", "all_results.json")
    # a teacher copied before it finished (msra_demo.sh TEACHER_FROM) has no all_results.json yet
    teacher = read_json(t_path, "teacher all_results.json") if os.path.isfile(t_path) else None
    targs = read_json(os.path.join(run, "teacher", "args.json"), "teacher args.json")
    ofa = read_json(os.path.join(run, "ofa", "all_results.json"), "ofa all_results.json")
    names = [n for n in MODELS if inference.model_file(prefix_of(run, n)) is not None]
    missing = sorted(set(MODELS) - set(names))
    if "teacher" not in names or "w0.5" not in names:
        raise UserError(f"{run}/export: the teacher and w0.5 static models are needed (missing: {missing})")

    curve = learning_curve(os.path.join(run, "teacher"))
    t_f1 = teacher["test"]["f1"] if teacher else ofa["test"]["teacher"]["f1"]
    widths = {n: ofa["test"]["widths"][tag]["f1"] for n, tag in WIDTH_TAGS.items()
              if tag and tag in ofa["test"]["widths"]}
    f1_int8 = static_test_f1(prefix_of(run, "w0.5_int8"), os.path.join(run, "data"), a.threads) \
        if "w0.5_int8" in names else None
    f1_fp32 = static_test_f1(prefix_of(run, "w0.5"), os.path.join(run, "data"), a.threads)
    chars, times = timings(run, names, a.rounds, a.threads)
    speed = {n: times["teacher"]["tag_s"] / times[n]["tag_s"] for n in names}

    print("teacher learning curve (dev entity F1 by step): "
          + ", ".join(f"{s}: {f:.4f}" for s, f in curve))
    if teacher:
        print(f"teacher budget: {teacher['steps']} steps x batch {targs['batch_size']} = "
              f"{teacher['steps'] * targs['batch_size']:,} sequences of <= {targs['max_seq_length']} tokens "
              f"({teacher['steps'] * targs['batch_size'] / teacher['examples']['train']:.2f} epochs of "
              f"{teacher['data']['train']:,} train sentences), lr {targs['learning_rate']:g}; best dev step "
              f"{teacher['best_step']}")
    else:
        print(f"teacher: an unfinished run copied at step {curve[-1][0] if curve else '?'}; its test F1 is the "
              "OFA run's evaluation of it")
    test_file = os.path.join(run, "data", "msra_test.txt")
    with open(test_file, encoding="utf-8") as f:
        n_test = sum(1 for ln in f if not ln.strip())   # a blank line ends each sentence
    print(f"test split: {test_file} ({n_test:,} sentences)")
    print(f"tag_10k.txt: {chars:,} characters; tagging time = median of {a.rounds} rounds, start-up apart")
    for n in names:
        print(f"  {n:<10} start-up {times[n]['startup_s']:6.2f} s   tagging {times[n]['tag_s']:6.2f} s   "
              f"x{speed[n]:.2f} vs teacher")
    print_targets(n_test, t_f1, widths, speed, f1_int8, f1_fp32)
    if missing:
        print(f"(not exported: {', '.join(missing)})")
    out = {"teacher_test_f1": t_f1, "learning_curve": curve, "width_test_f1": widths,
           "static_w0.5_test_f1": {"fp32": f1_fp32, "int8": f1_int8}, "tag_10k": {"characters": chars, **times},
           "speed_vs_teacher": speed, "teacher_args": targs}
    write_json_atomic(os.path.join(run, "figures.json"), out)
    return 0


if __name__ == "__main__":
    run_main(main)
