"""The compression report of an OFA run: a Markdown table, its JSON, and a
plot of the dev metric against latency (or against FLOPs when nothing was
benchmarked), one point per sub-network (width x depth) plus the teacher.

:func:`write_report` takes plain rows; :func:`build_ofa_report` builds them
from ``all_results.json`` of run_glue_ofa.py / run_msra_ner_ofa.py, the model
config (for FLOPs) and optionally a ``benchmark.py`` JSON.  The OFA scripts
call it when they finish (FLOPs only); ``report.py`` adds latencies.
"""
import json
import logging
import math
import os
import re

from .errors import UserError
from .publish import write_json_atomic

logger = logging.getLogger("bert_suite")
NAME_WIDTH = re.compile(r"^w(?:idth)?[_-]?(\d+(?:\.\d*)?(?:/\d+)?)$", re.IGNORECASE)
TOL = 1e-3


def _num(v):
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def _fmt(v, spec, none="-"):
    return format(v, spec) if _num(v) else none


def _lat(entry, bs):
    lat = entry.get("latency_ms") or {}
    return lat.get(str(bs), lat.get(bs))


def batch_sizes_of(rows, teacher):
    sizes = set()
    for e in list(rows) + [teacher or {}]:
        sizes.update(int(k) for k in (e.get("latency_ms") or {}))
    return sorted(sizes)


def si(v):
    if not _num(v):
        return "-"
    for div, suf in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g}{suf}"
    return f"{v:.3g}"


def _label(r):
    if r.get("label"):
        return r["label"]
    depth = r.get("depth", 1.0)
    return f"width {r['width']:.4f}" + (f", depth {depth:.4f}" if depth is not None and depth < 1 else "")


def write_report(output_dir, rows, teacher, metric_name="dev score", batch_size=None, title=None, notes=None,
                 budget=None, chosen=None, int8_rows=()):
    """Write ``report.md``, ``report.json`` and ``report.png`` into ``output_dir``.

    ``rows``: one dict per sub-network: ``width``, ``depth`` (default 1.0), ``heads``, ``ffn``, ``params``,
    ``flops`` (per example), ``score`` (dev metric, None if never evaluated),
    optional ``latency_ms`` ({batch size: median ms}) and ``label``.
    ``int8_rows``: the same fields for INT8 models (see :func:`int8_rows`),
    plus ``int8`` (agreement with the FP32 model, ops kept FP32): listed
    after the FP32 rows with two more columns.
    ``teacher``: dict with ``score``, ``params``, ``flops``, optional
    ``latency_ms``, ``label`` and ``latency_note``.  ``batch_size``: the
    latency plotted (default: the smallest batch size measured).
    ``budget`` (compress.py): ``text`` and the limits ``latency_ms`` (at
    ``batch_size``), ``size_mb``, ``max_drop``, drawn on the plot; entries
    then carry ``meets`` (bool) and optionally ``size_mb``.  ``chosen``: the
    label of the chosen entry ("" = none met the budget), marked in table and plot.
    Returns the paths written."""
    os.makedirs(output_dir, exist_ok=True)
    rows = sorted(rows, key=lambda r: (-(r.get("depth") or 1.0), -r["width"]))
    int8_rows = list(int8_rows or [])
    teacher = dict(teacher or {})
    teacher.setdefault("label", "teacher")
    sizes = batch_sizes_of(rows + int8_rows, teacher)
    if batch_size is None and sizes:
        batch_size = sizes[0]
    if batch_size is not None and sizes and batch_size not in sizes:
        raise ValueError(f"batch size {batch_size} was not benchmarked (measured: {sizes})")
    t_params, t_score = teacher.get("params"), teacher.get("score")

    # ---------------------------------------------------------------- markdown
    head = ["model", "width", "depth", "heads", "FFN", "params", "params vs teacher", "FLOPs/example", metric_name,
            "vs teacher"]
    for bs in sizes:
        head += [f"latency b={bs} (ms)", f"speed-up b={bs}"]
    with_size = any(_num(e.get("size_mb")) for e in rows + int8_rows + [teacher])
    head += (["size (MB)"] if with_size else []) + (["meets budget"] if budget else [])
    if int8_rows:
        head += ["INT8 agreement with FP32 (95% interval, texts)", "ops kept FP32"]
    lines = [f"# {title or 'Compression report'}", ""]
    if budget:
        lines += [f"Budget: {budget.get('text')}.", "",
                  f"Chosen: **{chosen}**." if chosen else "**No candidate meets the budget.**", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def line(e, is_teacher):
        name = e.get("label") if is_teacher else _label(e)
        cells = [f"**{name} (chosen)**" if chosen and name == chosen else name,
                 "1.0000" if is_teacher else f"{e['width']:.4f}",
                 "1.0000" if is_teacher else f"{e.get('depth') or 1.0:.4f}",
                 str(e.get("heads", "")) if not is_teacher else str(e.get("heads", "-")),
                 str(e.get("ffn", "")) if not is_teacher else str(e.get("ffn", "-")),
                 f"{e['params']:,}" if _num(e.get("params")) else "-",
                 (f"{e['params'] / t_params:.3f}" if _num(e.get("params")) and _num(t_params) else "-"),
                 si(e.get("flops")),
                 _fmt(e.get("score"), ".4f"),
                 "" if is_teacher else (f"{e['score'] - t_score:+.4f}" if _num(e.get("score")) and _num(t_score)
                                        else "-")]
        for bs in sizes:
            lat, t_lat = _lat(e, bs), _lat(teacher, bs)
            cells += [_fmt(lat, ".2f"), f"{t_lat / lat:.2f}x" if _num(lat) and _num(t_lat) else "-"]
        cells += [_fmt(e.get("size_mb"), ".2f")] if with_size else []
        cells += [str(e.get("meets", "-"))] if budget else []
        if int8_rows:
            cells += int8_cells(e.get("int8"))
        return "| " + " | ".join(cells) + " |"

    lines.append(line(teacher, True))
    lines += [line(r, False) for r in rows + int8_rows]
    lines.append("")
    lines.append("FLOPs: 2 x multiply-adds of the matrix products of one example (analyze.py)."
                 + (" Speed-up: teacher latency / latency at the same batch size." if sizes else ""))
    if teacher.get("latency_note"):
        lines.append(f"Teacher latency: {teacher['latency_note']}.")
    for n in notes or []:
        lines.append(n)
    plotted_latency = batch_size is not None and any(_num(_lat(e, batch_size)) for e in rows + int8_rows + [teacher])
    lines += ["", f"![{metric_name} vs {'latency' if plotted_latency else 'FLOPs'}](report.png)", ""]
    md = os.path.join(output_dir, "report.md")
    with open(md + ".tmp", "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    os.replace(md + ".tmp", md)

    js = os.path.join(output_dir, "report.json")
    write_json_atomic(js, {"metric": metric_name, "batch_size_plotted": batch_size if plotted_latency else None,
                           "teacher": teacher, "rows": rows, "int8_rows": int8_rows, "notes": notes or []})
    png = os.path.join(output_dir, "report.png")
    plot(png, rows + [dict(r, precision="int8") for r in int8_rows], teacher, metric_name,
         batch_size if plotted_latency else None, title, budget=budget, chosen=chosen)
    return {"md": md, "json": js, "png": png}


def int8_cells(q):
    """The two INT8 cells of a row: agreement with its FP32 model, ops kept FP32."""
    if not q:
        return ["", ""]
    ci = q.get("agreement_ci95") or [None, None]
    agree = (f"{q['agreement']:.4f} ({_fmt(ci[0], '.4f')}-{_fmt(ci[1], '.4f')}, {q.get('examples')})"
             if _num(q.get("agreement")) else "-")
    ops = q.get("fp32_ops")
    return [agree, ", ".join(ops) if ops else ("head only" if ops is not None else "-")]


def int8_rows(bench, rows):
    """Rows of the INT8 models of a benchmark.py JSON, from the info file
    quantize.py wrote beside each (``PREFIX.info.json``): the FP32 row of the
    same width and depth, with the INT8 dev score, the latency and
    ``int8`` = agreement with the FP32 model, its interval and text count, the
    FP32 dev score, the recipe and the ops kept FP32."""
    medians = {}
    for r in bench.get("rows") or []:
        medians.setdefault(r["model"], {})[str(r["batch_size"])] = r["median_ms"]
    out = []
    for m in bench.get("models") or []:
        path = (m.get("prefix") or "") + ".info.json"
        if not m.get("int8") or not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
        q = info.get("quantization") or {}
        w, d = float(info.get("width") or m.get("width") or 1.0), float(info.get("depth") or 1.0)
        base = next((r for r in rows if abs(r["width"] - w) < TOL and abs((r.get("depth") or 1.0) - d) < TOL), {})
        agree = q.get("agreement") or {}
        row = {k: base.get(k) for k in ("heads", "ffn", "params", "flops")}
        row.update(width=w, depth=d, label=f"{_label(dict(base or {'width': w}, depth=d))} INT8",
                   score=q.get("int8"), latency_ms=medians.get(m["name"], {}), benchmark_model=m["name"],
                   int8={"agreement": agree.get("value", q.get("prediction_agreement")),
                         "agreement_ci95": agree.get("ci95"), "examples": agree.get("examples"),
                         "measure": agree.get("measure"), "fp32_score": q.get("fp32"), "drop": q.get("drop"),
                         "recipe": {k: (q.get("calibration") or {}).get(k) for k in
                                    ("algo", "batch_num", "weight_quantize_type", "hist_percent")},
                         "fp32_ops": q.get("fp32_sites")})
        out.append(row)
    return out


def plot(path, rows, teacher, metric_name, batch_size, title=None, budget=None, chosen=None):
    """Metric against latency at ``batch_size`` (or GFLOPs if None); INT8
    rows (``precision`` "int8") as a second series; with a ``budget``, its
    latency limit (vertical) and metric floor (horizontal) drawn, the
    ``chosen`` entry circled."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    flops = [e.get("flops") for e in list(rows) + [teacher] if _num(e.get("flops"))]
    unit, scale = ("GFLOPs", 1e9) if not flops or max(flops) >= 1e9 else ("MFLOPs", 1e6)

    def x_of(e):
        if batch_size is not None:
            return _lat(e, batch_size)
        return e["flops"] / scale if _num(e.get("flops")) else None

    xlabel = (f"latency at batch {batch_size} (ms, median)" if batch_size is not None
              else f"{unit} per example")
    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=120)
    pts = []
    for int8, color, legend in ((False, "tab:blue", "OFA sub-models"), (True, "tab:green", "INT8")):
        part = [(x_of(r), r.get("score"), f"{_label(r)}\n{si(r.get('params'))} params") for r in rows
                if (r.get("precision") == "int8") == int8]
        part = sorted(p for p in part if _num(p[0]) and _num(p[1]))
        if part:
            ax.plot([p[0] for p in part], [p[1] for p in part], "-o", color=color, markersize=7, label=legend,
                    zorder=3)
        for x, y, lab in part:
            ax.annotate(lab, (x, y), textcoords="offset points", xytext=(7, -5), fontsize=9, color=color,
                        va="top")
        pts += part
    tx, ty = x_of(teacher), teacher.get("score")
    if _num(tx) and _num(ty):
        ax.plot([tx], [ty], "*", color="tab:red", markersize=16, alpha=0.75, label=teacher.get("label", "teacher"),
                zorder=2)
        ax.annotate(teacher.get("label", "teacher"), (tx, ty), textcoords="offset points", xytext=(7, 5),
                    fontsize=9, color="tab:red", va="bottom")
    _draw_budget(ax, rows, teacher, x_of, budget, chosen, batch_size)
    ys = [p[1] for p in pts] + ([ty] if _num(ty) and _num(tx) else [])
    xs = [p[0] for p in pts] + ([tx] if _num(ty) and _num(tx) else [])
    if ys and budget:   # keep the budget lines in view
        if batch_size is not None and _num(budget.get("latency_ms")):
            xs.append(budget["latency_ms"])
        if _num(budget.get("max_drop")) and _num(ty):
            ys.append(ty - budget["max_drop"])
    if ys:
        lo, hi = min(ys), max(ys)
        pad = max((hi - lo) * 0.15, 0.005)
        ax.set_ylim(lo - pad, hi + pad)
        xlo, xhi = min(xs), max(xs)
        xpad = max((xhi - xlo) * 0.12, 0.05 * abs(xhi) or 0.1)
        ax.set_xlim(max(0, xlo - xpad), xhi + 2 * xpad)
    else:
        ax.text(0.5, 0.5, "no evaluated point to plot", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(metric_name)
    ax.set_title(title or f"{metric_name} vs {'latency' if batch_size is not None else 'FLOPs'}")
    ax.grid(True, alpha=0.3)
    if pts or (_num(tx) and _num(ty)):
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path + ".tmp.png")
    plt.close(fig)
    os.replace(path + ".tmp.png", path)
    return path


def _draw_budget(ax, rows, teacher, x_of, budget, chosen, batch_size):
    if not budget:
        return
    if batch_size is not None and _num(budget.get("latency_ms")):
        ax.axvline(budget["latency_ms"], color="tab:orange", linestyle="--",
                   label=f"latency budget {budget['latency_ms']:.2f} ms")
    if _num(budget.get("max_drop")) and _num(teacher.get("score")):
        ax.axhline(teacher["score"] - budget["max_drop"], color="tab:purple", linestyle=":",
                   label=f"metric floor (teacher - {budget['max_drop']:g})")
    for e in list(rows) + [teacher]:
        if chosen and (e.get("label") or _label(e)) == chosen and _num(x_of(e)) and _num(e.get("score")):
            ax.plot([x_of(e)], [e["score"]], "o", markersize=18, markerfacecolor="none", markeredgewidth=2,
                    color="black", label=f"chosen: {chosen}", zorder=4)


def read_json(path, what):
    if not os.path.isfile(path):
        raise UserError(f"{what} {path}: no such file")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"{what} {path}: not readable JSON ({e})")


# --------------------------------------------------------------------------- building the report of an OFA run
def metric_name_of(table):
    for r in table["rows"]:
        res, score = r.get("results"), r.get("score")
        if isinstance(res, dict) and score is not None:
            for split, metrics in res.items():
                if isinstance(metrics, dict):
                    for k, v in metrics.items():
                        if isinstance(v, (int, float)) and abs(v - score) < 1e-12:
                            return f"{split} {k}"
    return "dev score"


def find_config(ofa_dir, table):
    for d in ["final"] + [r.get("dir") for r in table["rows"] if r.get("dir")]:
        path = os.path.join(ofa_dir, d, "config.json")
        if os.path.isfile(path):
            return path
    return None


def parse_map(items):
    """``NAME=WIDTH``, ``NAME=WIDTH@DEPTH`` or ``NAME=teacher`` -> {name: (width, depth) | "teacher"}."""
    from .elastic import parse_width
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UserError(f"--map {item}: expected NAME=WIDTH, NAME=WIDTH@DEPTH or NAME=teacher")
        if value.strip().lower() == "teacher":
            out[name] = "teacher"
            continue
        w, _, d = value.partition("@")
        try:
            out[name] = (parse_width(w), parse_width(d) if d else 1.0)
        except ValueError as e:
            raise UserError(f"--map {item}: {e}")
    return out


def target_of(model, explicit):
    """What a benchmarked model is: ("teacher" | (width, depth) | None, how we know)."""
    from .elastic import parse_width
    name = model["name"]
    if name in explicit:
        return explicit[name], "--map"
    if name.lower() == "teacher":
        return "teacher", "name"
    if model.get("width") is not None:
        return (float(model["width"]), float(model.get("depth") or 1.0)), "recorded width"
    m = NAME_WIDTH.match(name)
    if m:
        try:
            return (parse_width(m.group(1)), 1.0), "name"
        except ValueError:
            pass
    return None, None


def latencies(bench, explicit, keys):
    """({target: {bs: median ms}}, {target: model name}); target = a
    (width, depth) of ``keys`` or "teacher"."""
    models = bench.get("models") or []
    names = {m["name"] for m in models}
    unknown = sorted(set(explicit) - names)
    if unknown:
        raise UserError(f"--map: no benchmarked model named {', '.join(unknown)} (models: {', '.join(sorted(names))})")
    medians = {}
    for r in bench.get("rows") or []:
        medians.setdefault(r["model"], {})[str(r["batch_size"])] = r["median_ms"]
    found, source = {}, {}
    for m in models:
        if m.get("int8") and m["name"] not in explicit:   # not the FP32 sub-network of its width
            logger.info("benchmark model %s is INT8: not used as the latency of an FP32 sub-network", m["name"])
            continue
        target, how = target_of(m, explicit)
        if target is None:
            logger.warning("benchmark model %s: no width for it (name it teacher / w0.5000, or --map %s=WIDTH); "
                           "left out", m["name"], m["name"])
            continue
        if target != "teacher":
            match = [k for k in keys if abs(k[0] - target[0]) < TOL and abs(k[1] - target[1]) < TOL]
            if not match:
                logger.warning("benchmark model %s has width %.4f, depth %.4f (%s), which this run did not train; "
                               "left out", m["name"], target[0], target[1], how)
                continue
            target = match[0]
        if target in found:
            logger.warning("benchmark models %s and %s both map to %s; using %s", source[target], m["name"],
                           target, source[target])
            continue
        found[target], source[target] = medians.get(m["name"], {}), m["name"]
    return found, source


def _shape_at(analysis, shape, width, layers):
    sub = analysis.at_width(shape, width)
    if layers is not None and len(layers) < sub.num_layers:
        d = dict(sub.__dict__)
        d.update(heads_per_layer=sub.heads_per_layer[:len(layers)], ffn_per_layer=sub.ffn_per_layer[:len(layers)])
        sub = type(sub)(**d)
    return sub


def build_ofa_report(ofa_dir, bench=None, bench_path=None, explicit_map=(), batch_size=None, seq_len=None,
                     metric_name=None, title=None, output_dir=None, teacher_dir=None):
    """Rows from OFA_DIR/all_results.json (+ FLOPs from the config, latencies
    from a benchmark.py JSON), written by :func:`write_report`.  Returns its paths."""
    from . import analysis
    if not os.path.isdir(ofa_dir):
        raise UserError(f"--ofa_dir {ofa_dir}: not a directory")
    table = read_json(os.path.join(ofa_dir, "all_results.json"), "--ofa_dir")
    if not isinstance(table, dict) or not table.get("rows"):
        raise UserError(f"--ofa_dir {ofa_dir}: all_results.json has no rows (did the OFA run finish?)")
    if bench is not None and not isinstance(bench.get("rows"), list):
        raise UserError(f"--benchmark {bench_path}: not a benchmark.py JSON (no rows)")
    seq_len = seq_len or ((bench or {}).get("settings", {}).get("seq_len")) or 128

    cfg_path = find_config(ofa_dir, table)
    shape = None
    if cfg_path:
        shape = analysis.shape_from_config(analysis.read_config_file(cfg_path), source=cfg_path)
    else:
        logger.warning("no config.json under %s: FLOPs left out", ofa_dir)

    rows = []
    for r in table["rows"]:
        layers = r.get("layers")
        depth = float(r.get("depth") or 1.0)
        row = {"width": float(r["width"]), "depth": depth, "layers": layers, "heads": r.get("heads"),
               "ffn": r.get("ffn"), "params": r.get("params"), "score": r.get("score"), "step": r.get("step"),
               "dir": r.get("dir"), "flops": None}
        if shape is not None:
            c = analysis.count(_shape_at(analysis, shape, row["width"], layers if depth < 1 else None), seq_len)
            row["flops"] = c["flops"]["total"]
            if row["params"] is not None and row["params"] != c["params"]["total"]:
                logger.warning("%s: all_results.json says %s parameters, the config gives %s",
                               _label(row), row["params"], c["params"]["total"])
        rows.append(row)
    teacher = {"label": "teacher", "score": table.get("teacher_score")}
    t_shape = shape
    if teacher_dir:
        t_cfg = os.path.join(teacher_dir, "config.json")
        if not os.path.isfile(t_cfg):
            raise UserError(f"--teacher_dir {teacher_dir}: no config.json")
        t_shape = analysis.shape_from_config(analysis.read_config_file(t_cfg), source=t_cfg)
    if t_shape is not None:
        c = analysis.count(t_shape, seq_len)
        teacher.update(params=c["params"]["total"], flops=c["flops"]["total"], heads=t_shape.num_attention_heads,
                       ffn=t_shape.intermediate_size)

    notes = [f"Scores: {ofa_dir}/all_results.json (best dev score of each sub-network). FLOPs at {seq_len} tokens."]
    if bench is not None:
        keys = [(r["width"], r["depth"]) for r in rows]
        found, source = latencies(bench, parse_map(explicit_map), keys)
        for row in rows:
            k = (row["width"], row["depth"])
            if k in found:
                row["latency_ms"], row["benchmark_model"] = found[k], source[k]
        if "teacher" in found:
            teacher["latency_ms"], teacher["benchmark_model"] = found["teacher"], source["teacher"]
            for row in rows:   # the width-1.0, depth-1.0 sub-network has the teacher's graph shapes
                if "latency_ms" not in row and abs(row["width"] - 1.0) < TOL and abs(row["depth"] - 1.0) < TOL:
                    row["latency_ms"], row["benchmark_model"] = found["teacher"], source["teacher"]
                    notes.append(f"Latency of width 1.0: measured on {source['teacher']} (the same graph shapes).")
        else:
            full = [k for k in found if k != "teacher" and abs(k[0] - 1.0) < TOL and abs(k[1] - 1.0) < TOL]
            if full:
                teacher["latency_ms"] = found[full[0]]
                teacher["latency_note"] = (f"measured on {source[full[0]]}, the width-1.0 graph "
                                           f"(same shapes as the teacher)")
        st = bench.get("settings", {})
        notes.append(f"Latency: median of {st.get('repeats')} runs, Paddle Inference {st.get('paddle')} on "
                     f"{st.get('device')}, {st.get('threads')} threads, oneDNN {'on' if st.get('mkldnn') else 'off'}, "
                     f"seq {st.get('seq_len')} ({bench_path}).")
        if not found:
            logger.warning("no benchmarked model matched a sub-network of this run: plotting against FLOPs")
    q_rows = int8_rows(bench, rows) if bench is not None else []
    if q_rows:
        notes.append("INT8 rows: the dev score, agreement with the FP32 model (over dev + held-out texts) and "
                     "the ops kept FP32, from the info file quantize.py wrote beside each INT8 model.")
    try:
        return write_report(output_dir or ofa_dir, rows, teacher, metric_name=metric_name or metric_name_of(table),
                            batch_size=batch_size, title=title, notes=notes, int8_rows=q_rows)
    except ValueError as e:
        raise UserError(f"--batch_size: {e}")
