"""What benchmark.py prints and writes: the latency table, the time per
operator type under paddle.profiler (--profile: measured by
:func:`profile_ops`, the only function here that imports paddle) and
OUTPUT.csv / OUTPUT.json.
"""
import csv
import platform

from .publish import staged_file, write_json_atomic
from .report import fmt, si

CSV_COLUMNS = ["model", "batch_size", "seq_len", "median_ms", "p90_ms", "mean_ms", "min_ms", "throughput",
               "speedup", "speedup_paired", "precision", "flops_speedup", "measured_over_predicted", "gflops_per_example", "params",
               "peak_rss_mb", "runs", "prefix"]


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
        line = (f"{r['batch_size']:>5}  {r['model']:<{name_w}} {r['precision']:>4} {si(r['params']):>8} {si(flops):>8} "
                f"{r['median_ms']:>10.2f} {r['p90_ms']:>9.2f} {r['throughput']:>8.1f} {r['speedup']:>7.3f}x "
                f"{r['speedup_paired']:>6.3f}x "
                f"{fmt(r['flops_speedup'], '.3f'):>9}x {fmt(r['measured_over_predicted'], '.1%'):>9}")
        if mem:
            line += f" {fmt(r.get('peak_rss_mb'), '.0f'):>8}"
        lines.append(line)
    lines.append("speed-up: median of the first model / median of this one; paired: median over rounds of the "
                 "same ratio within a round; meas/pred: speed-up / FLOPs-predicted speed-up (FLOPs do not "
                 "see INT8: for an INT8 model it is the gain over the FP32 graph's prediction); INT8 models run "
                 "with oneDNN's INT8 kernels")
    if any(r["precision"] == "INT8" for r in rows) and settings.get("cpu_int8_instructions") == []:
        lines.append("note: " + NO_INT8_NOTE)
    if mem:
        base = [m.get("baseline_rss_mb") for m in models if m.get("baseline_rss_mb")]
        if base:
            lines.append(f"peak MB: peak resident memory of a fresh process running that model at that batch size "
                         f"(python + paddle alone: {min(base):.0f} MB)")
    return "\n".join(lines)


# x86 instructions that give oneDNN's INT8 kernels their speed: without one of them (an AVX2-only CPU),
# INT8 matmuls are no faster than FP32 (measured on an AMD EPYC with AVX2: INT8 0.98x its FP32 model)
INT8_INSTRUCTIONS = ("avx512_vnni", "avx_vnni", "amx_int8")
NO_INT8_NOTE = ("this CPU has none of " + ", ".join(INT8_INSTRUCTIONS) + ": oneDNN's INT8 kernels are not "
                "expected to be faster than FP32 on it (an INT8 model still saves memory and file size)")


def int8_instructions(cpuinfo=None):
    """The INT8 dot-product instructions the CPU reports (``flags`` of
    /proc/cpuinfo, or of the text given); None where that cannot be read."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            return None
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), None)
    return None if flags is None else [i for i in INT8_INSTRUCTIONS if i in flags]


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
    """PREFIX.csv (one row per model and batch size) and PREFIX.json (everything)."""
    with staged_file(prefix + ".csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in CSV_COLUMNS})
    out = {"settings": settings, "models": models, "rows": rows}
    if profiles:
        out["profile_ms_per_run"] = {str(bs): t for bs, t in profiles.items()}
    write_json_atomic(prefix + ".json", out)


