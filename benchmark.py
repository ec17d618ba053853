"""Latency of static inference models with Paddle Inference, side by side.

    python benchmark.py --models out/teacher_static/model out/ofa/static_0.5/model \\
        --names teacher w0.5000 --batch_sizes 1 16 --output out/bench

Every model gets the same kind of input: random token ids of exactly
--max_seq_length tokens drawn from its vocabulary (the tokenizer named in
PREFIX.info.json, else the word-embedding table of the program), token type 0.
For each batch size, all models are warmed up, then timed in interleaved
rounds (A B C, B C A, C A B, ...: the order rotates each round) so that noise
from the machine hits every model alike.  One timed run is a full predictor
call: copy the inputs in, run, copy the logits out.

Reported per model and batch size: median and p90 latency (ms), throughput
(examples/s from the median), the speed-up of the median over the FIRST
model's at the same batch size, the speed-up its FLOPs predict (FLOPs of the
first model / FLOPs of this one, counted by analyze.py's function from the
shapes found in the program) and measured/predicted.  "paired" is a second
estimate of the speed-up, sturdier on a busy machine: the median over rounds
of the ratio of the two models' runs within the same round.  --memory adds the peak
resident memory of each model at each batch size, measured in a fresh process
per model and batch size that creates the predictor and runs it (VmHWM, the
peak resident set; it includes Python and paddle themselves, reported
separately as the baseline).

--profile then runs each model --profile_runs more times under paddle.profiler
and prints the time per operator type (after Paddle Inference's fusions: fc =
the linear layers, fused_matmul = attention scores and weighted sum, ...) with
the first model's time / this model's: what shrinks with the width and what
does not.

--output P writes P.csv (one row per model and batch size) and P.json
(settings, models, rows with every timed run).
"""
import utils  # noqa: F401  (first: stack fixes before paddle is imported)

import argparse
import csv
import datetime
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np

from utils import analysis, inference
from utils.errors import UserError, run_main, user_error_from
from utils.output_dir import check_writable

logger = logging.getLogger("bert_suite")


def setup_logging():
    """The suite's log format on stdout (without importing paddlenlp, which
    utils.parallel.setup_logging does to quiet it: this script never uses it)."""
    if not logger.handlers:
        h = logging.StreamHandler(sys.stdout)
        h.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s %(message)s", "%H:%M:%S"))
        logger.addHandler(h)
    logger.setLevel(logging.INFO)
    logger.propagate = False

CSV_COLUMNS = ["model", "batch_size", "seq_len", "median_ms", "p90_ms", "mean_ms", "min_ms", "throughput",
               "speedup", "speedup_paired", "precision", "flops_speedup", "measured_over_predicted", "gflops_per_example", "params",
               "peak_rss_mb", "runs", "prefix"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", required=True, metavar="PREFIX",
                   help="static model prefixes (PREFIX.pdmodel + PREFIX.pdiparams); the first is the baseline")
    p.add_argument("--names", nargs="+", default=None, help="a name per model (default: from the paths)")
    p.add_argument("--batch_sizes", nargs="+", type=int, default=[1, 16, 40])
    p.add_argument("--max_seq_length", type=int, default=128, help="tokens per example (exactly)")
    p.add_argument("--threads", type=int, default=2, help="CPU math threads per predictor")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs per model and batch size")
    p.add_argument("--repeats", type=int, default=30, help="timed runs per model and batch size (>= 3)")
    p.add_argument("--no_mkldnn", action="store_true", help="CPU: disable oneDNN (on by default)")
    p.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    p.add_argument("--trt_fp16", action="store_true", help="GPU only: TensorRT FP16")
    p.add_argument("--no_memory_optim", action="store_true", help="disable Paddle Inference's memory reuse")
    p.add_argument("--memory", action="store_true",
                   help="also measure peak memory per model (one extra process per model)")
    p.add_argument("--profile", action="store_true",
                   help="after timing, profile each model with paddle.profiler and print time per operator type")
    p.add_argument("--profile_runs", type=int, default=5, help="runs per model and batch size under --profile")
    p.add_argument("--seed", type=int, default=0, help="seed of the random token ids")
    p.add_argument("--output", default=None, help="write OUTPUT.csv and OUTPUT.json")
    p.add_argument("--_memory_probe", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.output and os.path.splitext(args.output)[1] in (".csv", ".json"):
        args.output = os.path.splitext(args.output)[0]
    if args.repeats < 3:
        raise UserError(f"--repeats must be at least 3, got {args.repeats}")
    if args.profile_runs < 1:
        raise UserError(f"--profile_runs must be positive, got {args.profile_runs}")
    if args.warmup < 0:
        raise UserError(f"--warmup must be >= 0, got {args.warmup}")
    if args.threads < 1:
        raise UserError(f"--threads must be positive, got {args.threads}")
    if args.max_seq_length < 1:
        raise UserError(f"--max_seq_length must be positive, got {args.max_seq_length}")
    if not args.batch_sizes or any(b < 1 for b in args.batch_sizes):
        raise UserError(f"--batch_sizes must be positive integers, got {args.batch_sizes}")
    args.batch_sizes = list(dict.fromkeys(args.batch_sizes))
    if args.names is not None:
        if len(args.names) != len(args.models):
            raise UserError(f"--names: {len(args.names)} names for {len(args.models)} models")
        if len(set(args.names)) != len(args.names):
            raise UserError(f"--names: names must be unique, got {args.names}")
    if args.trt_fp16 and args.device != "gpu":
        raise UserError("--trt_fp16 needs --device gpu (TensorRT runs on NVIDIA GPUs only)")
    return args


def check_device(args):
    if args.device == "gpu":
        import paddle
        if not paddle.is_compiled_with_cuda():
            raise UserError("--device gpu: this paddle build has no CUDA support (install paddlepaddle-gpu) "
                            "or use --device cpu")


def default_names(prefixes):
    """Shortest trailing path parts that tell the models apart; a file name
    shared by all (e.g. 'model') is dropped."""
    parts = [os.path.normpath(os.path.abspath(p)).split(os.sep) for p in prefixes]
    if len(parts) > 1 and len({p[-1] for p in parts}) == 1 and all(len(p) > 1 for p in parts):
        parts = [p[:-1] for p in parts]
    for k in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-k:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [f"{i}:{p}" for i, p in enumerate(prefixes)]


# --------------------------------------------------------------------------- models
def tokenizer_vocab_size(prefix, info):
    tok = (info or {}).get("tokenizer_dir")
    if not tok:
        return None
    path = tok if os.path.isabs(tok) else os.path.join(os.path.dirname(prefix), tok)
    vocab = os.path.join(path, "vocab.txt")
    if not os.path.isfile(vocab):
        return None
    with open(vocab, encoding="utf-8") as f:
        return sum(1 for line in f if line.rstrip("\n"))


def describe_model(prefix, name, seq_len):
    """What the benchmark needs to know of one model (no predictor yet)."""
    if inference.model_file(prefix) is None or not os.path.isfile(prefix + ".pdiparams"):
        raise UserError(f"--models {prefix}: no static model here (expected {prefix}.pdmodel and "
                        f"{prefix}.pdiparams; export one with export_model.py --static_sub_model)")
    info = None
    if os.path.isfile(prefix + inference.INFO_SUFFIX):
        info = inference.read_info(prefix)
    shape, why = None, None
    try:
        shape = analysis.shape_from_static(prefix)
    except ValueError as e:
        why = str(e)
        logger.warning("%s: no FLOPs prediction (%s)", name, e)
    vocab = tokenizer_vocab_size(prefix, info)
    if shape is not None:
        vocab = min(vocab, shape.vocab_size) if vocab else shape.vocab_size
        if seq_len > shape.max_position_embeddings:
            raise UserError(f"--max_seq_length {seq_len} is longer than {name}'s {shape.max_position_embeddings} "
                            f"position embeddings")
    if not vocab:
        raise UserError(f"{prefix}: cannot tell the vocabulary size (no tokenizer_dir in "
                        f"{prefix}{inference.INFO_SUFFIX} and the program could not be read: {why})")
    m = {"name": name, "prefix": os.path.abspath(prefix), "vocab_size": int(vocab),
         "width": (info or {}).get("width", shape.width if shape is not None else None),
         "depth": (info or {}).get("depth"),
         "task_type": (info or {}).get("task_type"), "int8": bool((info or {}).get("int8"))}
    if shape is not None:
        c = analysis.count(shape, seq_len)
        m.update(heads_per_layer=shape.heads_per_layer, ffn_per_layer=shape.ffn_per_layer,
                 hidden_size=shape.hidden_size, num_layers=shape.num_layers,
                 params=c["params"]["total"], flops_per_example=c["flops"]["total"])
    else:
        m.update(params=None, flops_per_example=None)
    return m


def make_inputs(vocab, batch, seq_len, seed):
    rng = np.random.RandomState(seed * 100003 + batch)
    low = 1 if vocab > 1 else 0   # id 0 is [PAD] in BERT vocabularies: keep every token real
    ids = rng.randint(low, vocab, size=(batch, seq_len)).astype("int64")
    return ids, np.zeros_like(ids)


def predictor_for(args, prefix):
    with user_error_from(f"--models {prefix}: cannot load the static model (damaged or incomplete files?)",
                         RuntimeError, ValueError, OSError):
        return inference.create_predictor(prefix, device=args.device, threads=args.threads,
                                          mkldnn=not args.no_mkldnn, memory_optim=not args.no_memory_optim,
                                          trt_fp16=args.trt_fp16)


class Runner:
    """One predictor with its input and output handles: a timed call is
    copy-in, run, copy-out."""

    def __init__(self, predictor):
        self.p = predictor
        names = predictor.get_input_names()
        if set(names) == {"input_ids", "token_type_ids"}:   # by name when the graph has save_static's names
            names = ["input_ids", "token_type_ids"]
        self.inputs = [predictor.get_input_handle(n) for n in names]
        self.output = predictor.get_output_handle(predictor.get_output_names()[0])
        self.arrays = None

    def set(self, input_ids, token_type_ids):
        self.arrays = (np.ascontiguousarray(input_ids), np.ascontiguousarray(token_type_ids))

    def __call__(self):
        for h, a in zip(self.inputs, self.arrays):
            h.reshape(list(a.shape))
            h.copy_from_cpu(a)
        self.p.run()
        return self.output.copy_to_cpu()


# --------------------------------------------------------------------------- measuring
def measure(args, models, runners):
    """{(name, batch): [seconds of each timed run]}, interleaved rounds."""
    times = {}
    n = len(models)
    for bs in args.batch_sizes:
        for m, r in zip(models, runners):
            r.set(*make_inputs(m["vocab_size"], bs, args.max_seq_length, args.seed))
            out = r()  # first run: shapes, oneDNN primitives
            if out.shape[0] != bs:
                raise RuntimeError(f"{m['name']}: output batch {out.shape[0]} != {bs}")
        for _ in range(args.warmup):
            for r in runners:
                r()
        for m in models:
            times[(m["name"], bs)] = []
        for rnd in range(args.repeats):
            for j in range(n):
                k = (rnd + j) % n
                t0 = time.perf_counter()
                runners[k]()
                times[(models[k]["name"], bs)].append(time.perf_counter() - t0)
        logger.info("batch %d: %s", bs, ", ".join(
            f"{m['name']} {1e3 * np.median(times[(m['name'], bs)]):.2f} ms" for m in models))
    return times


def summarize(args, models, times):
    rows = []
    first = models[0]
    for bs in args.batch_sizes:
        base_median = float(np.median(times[(first["name"], bs)]))
        for m in models:
            t = np.asarray(times[(m["name"], bs)]) * 1e3
            median = float(np.median(t))
            speedup = base_median * 1e3 / median
            # per-round ratio: the runs of one round are adjacent in time, so a slow
            # spell of the machine cancels out; its median is a second, sturdier estimate
            paired = float(np.median(np.asarray(times[(first["name"], bs)]) * 1e3 / t))
            predicted = None
            if first["flops_per_example"] and m["flops_per_example"]:
                predicted = first["flops_per_example"] / m["flops_per_example"]
            rows.append({
                "model": m["name"], "batch_size": bs, "seq_len": args.max_seq_length,
                "median_ms": median, "p90_ms": float(np.percentile(t, 90)), "mean_ms": float(t.mean()),
                "min_ms": float(t.min()), "throughput": bs * 1e3 / median, "speedup": speedup,
                "speedup_paired": paired, "precision": "INT8" if m.get("int8") else "FP32",
                "flops_speedup": predicted,
                "measured_over_predicted": (speedup / predicted) if predicted else None,
                "gflops_per_example": (m["flops_per_example"] / 1e9) if m["flops_per_example"] else None,
                "params": m["params"], "peak_rss_mb": (m.get("peak_rss_mb") or {}).get(str(bs)), "runs": len(t),
                "prefix": m["prefix"], "times_ms": [round(float(x), 4) for x in t]})
    return rows


def peak_rss_mb():
    """Peak resident memory of this process in MB: VmHWM of /proc/self/status
    (reset by exec; getrusage's ru_maxrss is not: a child forked from a big
    process inherits the parent's peak), else ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def memory_probe(args):
    """Child process of --memory: one model at one batch size; prints JSON."""
    m = describe_model(args._memory_probe, "probe", args.max_seq_length)
    baseline = peak_rss_mb()          # python + paddle imported, no predictor yet
    r = Runner(predictor_for(args, args._memory_probe))
    for bs in args.batch_sizes:
        r.set(*make_inputs(m["vocab_size"], bs, args.max_seq_length, args.seed))
        for _ in range(3):
            r()
    print(json.dumps({"peak_rss_mb": peak_rss_mb(), "baseline_rss_mb": baseline}), flush=True)


def measure_memory(args, models):
    """m["peak_rss_mb"] = {batch size: MB}: a fresh process per model and batch
    size (one process running several shapes keeps oneDNN's per-shape caches
    of all of them, so its peak would depend on the list of batch sizes)."""
    for m in models:
        m["peak_rss_mb"], m["baseline_rss_mb"] = {}, None
        for bs in args.batch_sizes:
            cmd = [sys.executable, os.path.abspath(__file__), "--models", m["prefix"], "--_memory_probe", m["prefix"],
                   "--batch_sizes", str(bs), "--max_seq_length", str(args.max_seq_length),
                   "--threads", str(args.threads), "--device", args.device, "--seed", str(args.seed)]
            cmd += ["--no_mkldnn"] * args.no_mkldnn + ["--trt_fp16"] * args.trt_fp16
            cmd += ["--no_memory_optim"] * args.no_memory_optim
            r = subprocess.run(cmd, capture_output=True, text=True)
            line = [l for l in r.stdout.splitlines() if l.startswith("{")]
            if r.returncode != 0 or not line:
                logger.warning("%s: memory probe at batch %d failed (exit %d): %s", m["name"], bs, r.returncode,
                               (r.stderr.strip().splitlines() or ["?"])[-1])
                continue
            res = json.loads(line[-1])
            m["peak_rss_mb"][str(bs)] = res["peak_rss_mb"]
            m["baseline_rss_mb"] = res["baseline_rss_mb"]


def profile_ops(runner, runs):
    """{op type: {"calls": per run, "ms": per run}} of ``runs`` calls under paddle.profiler (CPU host events)."""
    import paddle.profiler as profiler
    from paddle.profiler.profiler_statistic import TracerEventType
    # on_trace_ready: keep the events in memory (the default writes ./profiler_log/*.json)
    prof = profiler.Profiler(targets=[profiler.ProfilerTarget.CPU], on_trace_ready=lambda p: None)
    prof.start()
    for _ in range(runs):
        runner()
    prof.stop()
    agg = {}
    stack = list(prof.profiler_result.get_data().values())
    while stack:
        node = stack.pop()
        if node.type == TracerEventType.Operator:   # outermost operator event; its children are its phases
            c, t = agg.get(node.name, (0, 0))
            agg[node.name] = (c + 1, t + node.end_ns - node.start_ns)
            continue
        stack.extend(node.children_node)
    return {op: {"calls": c / runs, "ms": t / 1e6 / runs} for op, (c, t) in agg.items()}


def profile_all(args, models, runners):
    """{batch size: {model name: op table}}; each model profiled on its own after a warm-up run."""
    out = {}
    for bs in args.batch_sizes:
        out[bs] = {}
        for m, r in zip(models, runners):
            r.set(*make_inputs(m["vocab_size"], bs, args.max_seq_length, args.seed))
            r()
            out[bs][m["name"]] = profile_ops(r, args.profile_runs)
    return out


def format_profile(models, profiles, runs):
    names = [m["name"] for m in models]
    w = max(10, *(len(n) for n in names)) + 9
    lines = []
    for bs, per_model in profiles.items():
        first = per_model[names[0]]
        ops = sorted({op for t in per_model.values() for op in t}, key=lambda op: -first.get(op, {"ms": 0})["ms"])
        totals = {n: sum(v["ms"] for v in per_model[n].values()) for n in names}
        lines.append(f"time per operator type, batch {bs} (paddle.profiler, {runs} runs per model; ms per run, "
                     f"in brackets: {names[0]}'s time / this model's)")
        lines.append(f"{'operator':<22} {'calls':>5}  " + " ".join(f"{n:>{w - 9}}{'':9}" for n in names))
        for op in ops + ["(all operators)"]:
            cells = []
            for n in names:
                v = totals[n] if op == "(all operators)" else per_model[n].get(op, {}).get("ms")
                ref = totals[names[0]] if op == "(all operators)" else first.get(op, {}).get("ms")
                if v is None:
                    cells.append(f"{'-':>{w}}")
                elif n == names[0] or not ref or not v:
                    cells.append(f"{v:>{w - 9}.2f}{'':9}")
                else:
                    cells.append(f"{v:>{w - 9}.2f} ({ref / v:>5.2f}x)")
            calls = "" if op == "(all operators)" else f"{first.get(op, {}).get('calls', 0):.0f}"
            lines.append(f"{op:<22} {calls:>5}  " + " ".join(cells))
        lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------- output
def _fmt(v, spec, none="-"):
    return none if v is None else format(v, spec)


def _si(v):
    if v is None:
        return "-"
    for div, suf in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g}{suf}"
    return f"{v:.3g}"


def format_table(settings, models, rows):
    name_w = max(8, *(len(m["name"]) for m in models))
    head = (f"{'batch':>5}  {'model':<{name_w}} {'prec':>4} {'params':>8} {'FLOPs/ex':>8} {'median ms':>10} {'p90 ms':>9} "
            f"{'ex/s':>8} {'speed-up':>8} {'paired':>7} {'FLOPs-pred':>10} {'meas/pred':>9}")
    mem = any(r.get("peak_rss_mb") for r in rows)
    if mem:
        head += f" {'peak MB':>8}"
    lines = [f"Paddle Inference {settings['paddle']} on {settings['device']}"
             + (f" ({settings['cpu']})" if settings["device"] == "cpu" else "")
             + f", {settings['threads']} threads, oneDNN {'on' if settings['mkldnn'] else 'off'}"
             + (", TensorRT FP16" if settings["trt_fp16"] else "")
             + f"; seq {settings['seq_len']}, {settings['warmup']} warm-up + {settings['repeats']} timed runs per "
               f"model and batch, interleaved rounds"
             + (f"; load average {settings['loadavg_before']:.1f} -> {settings['loadavg_after']:.1f}"
                if settings.get("loadavg_after") is not None else ""), head]
    last_bs = None
    for r in rows:
        if last_bs is not None and r["batch_size"] != last_bs:
            lines.append("")
        last_bs = r["batch_size"]
        flops = None if r["gflops_per_example"] is None else r["gflops_per_example"] * 1e9
        line = (f"{r['batch_size']:>5}  {r['model']:<{name_w}} {r['precision']:>4} {_si(r['params']):>8} {_si(flops):>8} "
                f"{r['median_ms']:>10.2f} {r['p90_ms']:>9.2f} {r['throughput']:>8.1f} {r['speedup']:>7.3f}x "
                f"{r['speedup_paired']:>6.3f}x "
                f"{_fmt(r['flops_speedup'], '.3f'):>9}x {_fmt(r['measured_over_predicted'], '.1%'):>9}")
        if mem:
            line += f" {_fmt(r.get('peak_rss_mb'), '.0f'):>8}"
        lines.append(line)
    lines.append("speed-up: median of the first model / median of this one; paired: median over rounds of the "
                 "same ratio within a round; meas/pred: speed-up / FLOPs-predicted speed-up (FLOPs do not "
                 "see INT8: for an INT8 model it is the gain over the FP32 graph's prediction); INT8 models run "
                 "with oneDNN's INT8 kernels")
    if mem:
        base = [m.get("baseline_rss_mb") for m in models if m.get("baseline_rss_mb")]
        if base:
            lines.append(f"peak MB: peak resident memory of a fresh process running that model at that batch size "
                         f"(python + paddle alone: {min(base):.0f} MB)")
    return "\n".join(lines)


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_outputs(prefix, settings, models, rows, profiles=None):
    d = os.path.dirname(os.path.abspath(prefix))
    os.makedirs(d, exist_ok=True)
    tmp = prefix + ".csv.tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in CSV_COLUMNS})
    os.replace(tmp, prefix + ".csv")
    from utils.publish import write_json_atomic
    out = {"settings": settings, "models": models, "rows": rows}
    if profiles:
        out["profile_ms_per_run"] = {str(bs): t for bs, t in profiles.items()}
    write_json_atomic(prefix + ".json", out)


def main(argv=None):
    args = parse_args(argv)
    setup_logging()
    for p in args.models:  # every path first: a typo in the last one should not wait for the others
        if inference.model_file(p) is None or not os.path.isfile(p + ".pdiparams"):
            raise UserError(f"--models {p}: no static model here (expected {p}.pdmodel and {p}.pdiparams; "
                            f"export one with export_model.py --static_sub_model)")
    if args.output:
        for ext in (".csv", ".json"):
            check_writable(args.output + ext, "--output", want_dir=False)
    check_device(args)
    if args._memory_probe:
        return memory_probe(args)
    names = args.names or default_names(args.models)
    models = [describe_model(p, n, args.max_seq_length) for p, n in zip(args.models, names)]
    import paddle
    settings = {"paddle": paddle.__version__, "device": args.device, "cpu": cpu_name(),
                "cpu_count": os.cpu_count(), "threads": args.threads,
                "mkldnn": args.device == "cpu" and not args.no_mkldnn, "trt_fp16": args.trt_fp16,
                "memory_optim": not args.no_memory_optim, "seq_len": args.max_seq_length,
                "batch_sizes": args.batch_sizes, "warmup": args.warmup, "repeats": args.repeats,
                "seed": args.seed, "order": "interleaved rounds, order rotated each round",
                "timed_call": "copy inputs in + run + copy logits out",
                "flops": "analyze.py: 2 x multiply-adds of the matrix products, one example",
                "date": datetime.datetime.now().isoformat(timespec="seconds"), "host": platform.node()}
    if args.memory:   # first, one process per model, while this one is still small
        measure_memory(args, models)
    settings["loadavg_before"] = os.getloadavg()[0]
    runners = [Runner(predictor_for(args, m["prefix"])) for m in models]
    times = measure(args, models, runners)
    settings["loadavg_after"] = os.getloadavg()[0]
    profiles = profile_all(args, models, runners) if args.profile else None
    del runners
    rows = summarize(args, models, times)
    print(format_table(settings, models, rows), flush=True)
    if profiles:
        print("\n" + format_profile(models, profiles, args.profile_runs), flush=True)
    if args.output:
        write_outputs(args.output, settings, models, rows, profiles)
        print(f"wrote {args.output}.csv and {args.output}.json", flush=True)
    return rows


if __name__ == "__main__":
    run_main(main)
