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
import datetime
import logging
import os
import platform
import time

import numpy as np

from utils import analysis, inference, memory
from utils.bench_report import cpu_name, format_profile, format_table, int8_instructions, profile_ops, write_outputs
from utils.errors import UserError, run_main, user_error_from
from utils.log import setup_logging
from utils.output_dir import check_writable

logger = logging.getLogger("bert_suite")

PROBE_TAG = "BENCH_MEMORY"


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


def predictor_options(args):
    """The Paddle Inference settings of the command line (what every predictor is made with)."""
    return {"device": args.device, "threads": args.threads, "mkldnn": not args.no_mkldnn,
            "memory_optim": not args.no_memory_optim, "trt_fp16": args.trt_fp16}


def check_device(device):
    if device == "gpu":
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
def tokenizer_ids(prefix, info):
    """(vocabulary size, pad id) of the tokenizer named in PREFIX.info.json,
    or (None, 0) without one.  WordPiece: vocab.txt ([PAD] is id 0 in BERT
    vocabularies); SentencePiece (XLM-R, utils/spm_tokenizer.py): <pad> is 1."""
    tok = (info or {}).get("tokenizer_dir")
    if not tok:
        return None, 0
    path = tok if os.path.isabs(tok) else os.path.join(os.path.dirname(prefix), tok)
    vocab = os.path.join(path, "vocab.txt")
    if os.path.isfile(vocab):
        with open(vocab, encoding="utf-8") as f:
            tokens = [line.rstrip("\n") for line in f]
        return sum(1 for t in tokens if t), tokens.index("[PAD]") if "[PAD]" in tokens else 0
    from utils.spm_tokenizer import MODEL_FILE, XlmrSpmTokenizer
    if os.path.isfile(os.path.join(path, MODEL_FILE)):
        t = XlmrSpmTokenizer.from_pretrained(path)
        return int(t.vocab_size), int(t.pad_token_id)
    return None, 0


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
    vocab, pad_id = tokenizer_ids(prefix, info)
    if shape is not None:
        vocab = min(vocab, shape.vocab_size) if vocab else shape.vocab_size
        if seq_len > shape.max_position_embeddings:
            raise UserError(f"--max_seq_length {seq_len} is longer than {name}'s {shape.max_position_embeddings} "
                            f"position embeddings")
    if not vocab:
        raise UserError(f"{prefix}: cannot tell the vocabulary size (no tokenizer_dir in "
                        f"{prefix}{inference.INFO_SUFFIX} and the program could not be read: {why})")
    m = {"name": name, "prefix": os.path.abspath(prefix), "vocab_size": int(vocab), "pad_id": pad_id,
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


def make_inputs(vocab, batch, seq_len, seed, pad_id=0):
    """Random ids of ``vocab`` without the pad id (the model masks pad
    positions out: every token must be real), token type 0."""
    rng = np.random.RandomState(seed * 100003 + batch)
    if vocab > 1:   # draw from vocab - 1 ids and skip the pad id (pad 0: ids 1..vocab-1, as always)
        ids = rng.randint(0, vocab - 1, size=(batch, seq_len)).astype("int64")
        ids[ids >= pad_id] += 1
    else:
        ids = np.zeros((batch, seq_len), dtype="int64")
    return ids, np.zeros_like(ids)


def predictor_for(prefix, opts):
    with user_error_from(f"--models {prefix}: cannot load the static model (damaged or incomplete files?)",
                         RuntimeError, ValueError, OSError):
        return inference.create_predictor(prefix, **opts)


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
def measure(models, runners, batch_sizes, seq_len, seed, warmup, repeats):
    """{(name, batch): [seconds of each timed run]}, interleaved rounds."""
    times = {}
    n = len(models)
    for bs in batch_sizes:
        for m, r in zip(models, runners):
            r.set(*make_inputs(m["vocab_size"], bs, seq_len, seed, m["pad_id"]))
            out = r()  # first run: shapes, oneDNN primitives
            if out.shape[0] != bs:
                raise RuntimeError(f"{m['name']}: output batch {out.shape[0]} != {bs}")
        for _ in range(warmup):
            for r in runners:
                r()
        for m in models:
            times[(m["name"], bs)] = []
        for rnd in range(repeats):
            for j in range(n):
                k = (rnd + j) % n
                t0 = time.perf_counter()
                runners[k]()
                times[(models[k]["name"], bs)].append(time.perf_counter() - t0)
        logger.info("batch %d: %s", bs, ", ".join(
            f"{m['name']} {1e3 * np.median(times[(m['name'], bs)]):.2f} ms" for m in models))
    return times


def summarize(models, times, batch_sizes, seq_len):
    rows = []
    first = models[0]
    for bs in batch_sizes:
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
                "model": m["name"], "batch_size": bs, "seq_len": seq_len,
                "median_ms": median, "p90_ms": float(np.percentile(t, 90)), "mean_ms": float(t.mean()),
                "min_ms": float(t.min()), "throughput": bs * 1e3 / median, "speedup": speedup,
                "speedup_paired": paired, "precision": "INT8" if m.get("int8") else "FP32",
                "flops_speedup": predicted,
                "measured_over_predicted": (speedup / predicted) if predicted else None,
                "gflops_per_example": (m["flops_per_example"] / 1e9) if m["flops_per_example"] else None,
                "params": m["params"], "peak_rss_mb": (m.get("peak_rss_mb") or {}).get(str(bs)), "runs": len(t),
                "prefix": m["prefix"], "times_ms": [round(float(x), 4) for x in t]})
    return rows


def memory_probe(prefix, batch_sizes, seq_len, seed, opts):
    """Child process of --memory: one model at one batch size; prints JSON."""
    m = describe_model(prefix, "probe", seq_len)
    baseline = memory.peak_rss_mb()          # python + paddle imported, no predictor yet
    r = Runner(predictor_for(prefix, opts))
    for bs in batch_sizes:
        r.set(*make_inputs(m["vocab_size"], bs, seq_len, seed, m["pad_id"]))
        for _ in range(3):
            r()
    memory.emit(PROBE_TAG, {"peak_rss_mb": memory.peak_rss_mb(), "baseline_rss_mb": baseline})


def probe_command(prefix, bs, seq_len, seed, opts):
    """benchmark.py's own command line that runs :func:`memory_probe`."""
    cmd = [os.path.abspath(__file__), "--models", prefix, "--_memory_probe", prefix, "--batch_sizes", str(bs),
           "--max_seq_length", str(seq_len), "--threads", str(opts["threads"]), "--device", opts["device"],
           "--seed", str(seed)]
    return (cmd + ["--no_mkldnn"] * (not opts["mkldnn"]) + ["--trt_fp16"] * opts["trt_fp16"]
            + ["--no_memory_optim"] * (not opts["memory_optim"]))


def measure_memory(models, batch_sizes, seq_len, seed, opts):
    """m["peak_rss_mb"] = {batch size: MB}: a fresh process per model and batch
    size (one process running several shapes keeps oneDNN's per-shape caches
    of all of them, so its peak would depend on the list of batch sizes)."""
    for m in models:
        m["peak_rss_mb"], m["baseline_rss_mb"] = {}, None
        for bs in batch_sizes:
            res, code, stderr = memory.run_probe(probe_command(m["prefix"], bs, seq_len, seed, opts), PROBE_TAG)
            if res is None:
                logger.warning("%s: memory probe at batch %d failed (exit %d): %s", m["name"], bs, code,
                               (stderr.strip().splitlines() or ["?"])[-1])
                continue
            m["peak_rss_mb"][str(bs)] = res["peak_rss_mb"]
            m["baseline_rss_mb"] = res["baseline_rss_mb"]


def profile_all(models, runners, batch_sizes, seq_len, seed, runs):
    """{batch size: {model name: op table}}; each model profiled on its own after a warm-up run."""
    out = {}
    for bs in batch_sizes:
        out[bs] = {}
        for m, r in zip(models, runners):
            r.set(*make_inputs(m["vocab_size"], bs, seq_len, seed, m["pad_id"]))
            r()
            out[bs][m["name"]] = profile_ops(r, runs)
    return out


def check_models(prefixes, output):
    for p in prefixes:  # every path first: a typo in the last one should not wait for the others
        if inference.model_file(p) is None or not os.path.isfile(p + ".pdiparams"):
            raise UserError(f"--models {p}: no static model here (expected {p}.pdmodel and {p}.pdiparams; "
                            f"export one with export_model.py --static_sub_model)")
    if output:
        for ext in (".csv", ".json"):
            check_writable(output + ext, "--output", want_dir=False)


def settings_of(args):
    import paddle
    return {"paddle": paddle.__version__, "device": args.device, "cpu": cpu_name(),
            "cpu_int8_instructions": int8_instructions() if args.device == "cpu" else None,
            "cpu_count": os.cpu_count(), "threads": args.threads,
            "mkldnn": args.device == "cpu" and not args.no_mkldnn, "trt_fp16": args.trt_fp16,
            "memory_optim": not args.no_memory_optim, "seq_len": args.max_seq_length,
            "batch_sizes": args.batch_sizes, "warmup": args.warmup, "repeats": args.repeats,
            "seed": args.seed, "order": "interleaved rounds, order rotated each round",
            "timed_call": "copy inputs in + run + copy logits out",
            "flops": "analyze.py: 2 x multiply-adds of the matrix products, one example",
            "date": datetime.datetime.now().isoformat(timespec="seconds"), "host": platform.node()}


def main(argv=None):
    args = parse_args(argv)
    setup_logging()
    check_models(args.models, args.output)
    check_device(args.device)
    opts = predictor_options(args)
    seq_len, batch_sizes, seed = args.max_seq_length, args.batch_sizes, args.seed
    if args._memory_probe:
        return memory_probe(args._memory_probe, batch_sizes, seq_len, seed, opts)
    names = args.names or default_names(args.models)
    models = [describe_model(p, n, seq_len) for p, n in zip(args.models, names)]
    settings = settings_of(args)
    if args.memory:   # first, one process per model, while this one is still small
        measure_memory(models, batch_sizes, seq_len, seed, opts)
    settings["loadavg_before"] = os.getloadavg()[0]
    runners = [Runner(predictor_for(m["prefix"], opts)) for m in models]
    times = measure(models, runners, batch_sizes, seq_len, seed, args.warmup, args.repeats)
    settings["loadavg_after"] = os.getloadavg()[0]
    profiles = profile_all(models, runners, batch_sizes, seq_len, seed, args.profile_runs) if args.profile else None
    del runners
    rows = summarize(models, times, batch_sizes, seq_len)
    print(format_table(settings, models, rows), flush=True)
    if profiles:
        print("\n" + format_profile(models, profiles, args.profile_runs), flush=True)
    if args.output:
        write_outputs(args.output, settings, models, rows, profiles)
        print(f"wrote {args.output}.csv and {args.output}.json", flush=True)
    return rows


if __name__ == "__main__":
    run_main(main)
