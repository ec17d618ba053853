"""What fix 11 of utils/compat.py (MKL_DEBUG_CPU_TYPE=5 on AMD CPUs) buys:
dynamic-graph GEMMs, and optionally a training step and an evaluation pass
of a model, timed with MKL's stock dispatch and with the suite's setting, in
alternating child processes (a shared machine slows both alike).

    python benchmarks/mkl_dispatch.py [--model_dir out/msra_demo/teacher/model_best] \
        [--rounds 3] [--output mkl.json]

"stock" runs the child with MKL_DEBUG_CPU_TYPE set empty (MKL's own choice
by CPU vendor; utils.compat leaves a set variable alone); "suite" with what
utils.compat sets on this CPU (printed; on a CPU that needs nothing both runs
are the same).  A training step is forward, token or sequence cross-entropy,
backward and an AdamW update with gradient clipping on a fixed random batch
of --batch_size x --seq_len; the evaluation is a forward pass at the same
shape under no_grad.  Medians of --repeat timings after a warm-up.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES = [(1024, 512, 512), (1024, 512, 2048), (1024, 2048, 512)]   # m, k, n


def child(args):
    """Time the GEMMs (and the model) in this process; print one JSON line."""
    import time

    import utils  # noqa: F401  (compat: sets MKL_DEBUG_CPU_TYPE unless given)
    import numpy as np
    import paddle
    paddle.set_device("cpu")

    def median_ms(fn):
        for _ in range(2):
            fn()
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return float(np.median(times) * 1000)

    out = {"MKL_DEBUG_CPU_TYPE": os.environ.get("MKL_DEBUG_CPU_TYPE"), "gemm_ms": {}}
    for m, k, n in SHAPES:
        x, w = paddle.randn([m, k]), paddle.randn([k, n])
        out["gemm_ms"][f"{m}x{k}x{n}"] = median_ms(lambda: paddle.matmul(x, w).numpy())
    if args.model_dir:
        from utils import elastic_forward
        from utils.losses import token_loss
        from utils.modeling import load_model, suite_info
        model, _, config = load_model(args.model_dir)    # the task type and labels the model records
        kind = suite_info(config).get("task_type", "token_classification")
        labels = int(model.classifier.weight.shape[-1])
        rng = np.random.default_rng(0)
        ids = paddle.to_tensor(rng.integers(100, 1000, (args.batch_size, args.seq_len)).astype("int64"))
        seg = paddle.zeros_like(ids)
        if kind == "token_classification":
            target = paddle.to_tensor(rng.integers(0, labels, (args.batch_size, args.seq_len)).astype("int64"))
        else:
            target = paddle.to_tensor(rng.integers(0, labels, (args.batch_size,)).astype("int64"))
        opt = paddle.optimizer.AdamW(learning_rate=1e-6, parameters=model.parameters(),
                                     grad_clip=paddle.nn.ClipGradByGlobalNorm(1.0))

        def step():
            logits = elastic_forward.forward(model, ids, seg)
            loss = token_loss(logits, target) if kind == "token_classification" else \
                paddle.nn.functional.cross_entropy(logits, target)
            loss.backward()
            opt.step()
            opt.clear_grad()
            float(loss)

        model.train()
        out["train_step_ms"] = median_ms(step)
        model.eval()
        with paddle.no_grad():
            out["eval_forward_ms"] = median_ms(lambda: elastic_forward.forward(model, ids, seg).numpy())
    print(json.dumps(out))


def run_child(argv, mkl):
    env = dict(os.environ)
    env.pop("MKL_DEBUG_CPU_TYPE", None)
    if mkl == "stock":
        env["MKL_DEBUG_CPU_TYPE"] = ""
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", *argv], cwd=ROOT, env=env,
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stderr)
        raise SystemExit(f"error: the {mkl} child failed (exit {r.returncode})")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_dir", default=None, help="also time a training step and a forward of this model")
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--seq_len", type=int, default=60)
    p.add_argument("--rounds", type=int, default=3, help="alternating pairs of child processes")
    p.add_argument("--repeat", type=int, default=10, help="timings per measurement in a child")
    p.add_argument("--output", default=None, help="also write the figures to this JSON file")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)
    if min(args.rounds, args.repeat, args.batch_size, args.seq_len) <= 0:
        print("error: --rounds, --repeat, --batch_size and --seq_len must be positive", file=sys.stderr)
        raise SystemExit(2)
    if args.model_dir and not os.path.isdir(args.model_dir):
        print(f"error: --model_dir {args.model_dir}: not a directory", file=sys.stderr)
        raise SystemExit(2)
    import numpy as np
    argv_child = ["--batch_size", str(args.batch_size), "--seq_len", str(args.seq_len),
                  "--repeat", str(args.repeat)] + (["--model_dir", args.model_dir] if args.model_dir else [])
    runs = {"stock": [], "suite": []}
    for r in range(args.rounds):
        for mkl in runs:
            runs[mkl].append(run_child(argv_child, mkl))
            print(f"round {r + 1}/{args.rounds} {mkl}: {json.dumps(runs[mkl][-1])}", flush=True)
    keys = [("gemm_ms", k) for k in runs["stock"][0]["gemm_ms"]] + \
        [(k, None) for k in ("train_step_ms", "eval_forward_ms") if k in runs["stock"][0]]

    def med(mkl, key, sub):
        return float(np.median([(r[key][sub] if sub else r[key]) for r in runs[mkl]]))

    suite_type = runs["suite"][0]["MKL_DEBUG_CPU_TYPE"]
    print(f"MKL_DEBUG_CPU_TYPE set by the suite on this CPU: {suite_type!r}"
          + ("" if suite_type else " (none needed: both columns run MKL's own dispatch)"))
    table = {}
    for key, sub in keys:
        name = f"GEMM {sub}" if sub else key.replace("_ms", "")
        s, f = med("stock", key, sub), med("suite", key, sub)
        table[name] = {"stock_ms": s, "suite_ms": f, "speed_up": s / f}
        flops = ""
        if sub:
            m, k, n = (int(v) for v in sub.split("x"))
            flops = f"  ({2 * m * k * n / s / 1e6:.0f} -> {2 * m * k * n / f / 1e6:.0f} GFLOP/s)"
        print(f"{name:>22}: stock {s:8.1f} ms, suite {f:8.1f} ms, x{s / f:.2f}{flops}")
    if args.output:
        sys.path.insert(0, ROOT)
        from utils.publish import write_json_atomic
        write_json_atomic(args.output, {"suite_MKL_DEBUG_CPU_TYPE": suite_type, "rounds": args.rounds,
                                        "batch_size": args.batch_size, "seq_len": args.seq_len,
                                        "model_dir": args.model_dir, "figures": table, "runs": runs})


if __name__ == "__main__":
    main()
