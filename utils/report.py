"""The compression report of an OFA run: a Markdown table, its JSON, and a
plot of the dev metric against latency (or against FLOPs when nothing was
benchmarked), one point per width plus the teacher.

:func:`write_report` takes plain rows; ``report.py`` (top level) builds them
from ``all_results.json`` of run_glue_ofa.py / run_msra_ner.py, the model
config (for FLOPs) and optionally a ``benchmark.py`` JSON.
"""
import json
import math
import os

from .training import write_json_atomic


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
    return r.get("label") or f"width {r['width']:.4f}"


def write_report(output_dir, rows, teacher, metric_name="dev score", batch_size=None, title=None, notes=None):
    """Write ``report.md``, ``report.json`` and ``report.png`` into ``output_dir``.

    ``rows``: one dict per width: ``width``, ``heads``, ``ffn``, ``params``,
    ``flops`` (per example), ``score`` (dev metric, None if never evaluated),
    optional ``latency_ms`` ({batch size: median ms}) and ``label``.
    ``teacher``: dict with ``score``, ``params``, ``flops``, optional
    ``latency_ms``, ``label`` and ``latency_note``.  ``batch_size``: the
    latency plotted (default: the smallest batch size measured).
    Returns the paths written."""
    os.makedirs(output_dir, exist_ok=True)
    rows = sorted(rows, key=lambda r: -r["width"])
    teacher = dict(teacher or {})
    teacher.setdefault("label", "teacher")
    sizes = batch_sizes_of(rows, teacher)
    if batch_size is None and sizes:
        batch_size = sizes[0]
    if batch_size is not None and sizes and batch_size not in sizes:
        raise ValueError(f"batch size {batch_size} was not benchmarked (measured: {sizes})")
    t_params, t_score = teacher.get("params"), teacher.get("score")

    # ---------------------------------------------------------------- markdown
    head = ["model", "width", "heads", "FFN", "params", "params vs teacher", "FLOPs/example", metric_name,
            "vs teacher"]
    for bs in sizes:
        head += [f"latency b={bs} (ms)", f"speed-up b={bs}"]
    lines = [f"# {title or 'Compression report'}", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def line(e, is_teacher):
        cells = [e.get("label") if is_teacher else _label(e),
                 "1.0000" if is_teacher else f"{e['width']:.4f}",
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
        return "| " + " | ".join(cells) + " |"

    lines.append(line(teacher, True))
    lines += [line(r, False) for r in rows]
    lines.append("")
    lines.append("FLOPs: 2 x multiply-adds of the matrix products of one example (analyze.py)."
                 + (" Speed-up: teacher latency / latency at the same batch size." if sizes else ""))
    if teacher.get("latency_note"):
        lines.append(f"Teacher latency: {teacher['latency_note']}.")
    for n in notes or []:
        lines.append(n)
    plotted_latency = batch_size is not None and any(_num(_lat(e, batch_size)) for e in rows + [teacher])
    lines += ["", f"![{metric_name} vs {'latency' if plotted_latency else 'FLOPs'}](report.png)", ""]
    md = os.path.join(output_dir, "report.md")
    with open(md + ".tmp", "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    os.replace(md + ".tmp", md)

    js = os.path.join(output_dir, "report.json")
    write_json_atomic(js, {"metric": metric_name, "batch_size_plotted": batch_size if plotted_latency else None,
                           "teacher": teacher, "rows": rows, "notes": notes or []})
    png = os.path.join(output_dir, "report.png")
    plot(png, rows, teacher, metric_name, batch_size if plotted_latency else None, title)
    return {"md": md, "json": js, "png": png}


def plot(path, rows, teacher, metric_name, batch_size, title=None):
    """Metric against latency at ``batch_size`` (or GFLOPs if None)."""
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
    pts = [(x_of(r), r.get("score"), f"{_label(r)}\n{si(r.get('params'))} params") for r in rows]
    pts = [p for p in pts if _num(p[0]) and _num(p[1])]
    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=120)
    if pts:
        pts_sorted = sorted(pts)
        ax.plot([p[0] for p in pts_sorted], [p[1] for p in pts_sorted], "-o", color="tab:blue", markersize=7,
                label="OFA sub-models", zorder=3)
        for x, y, lab in pts:
            ax.annotate(lab, (x, y), textcoords="offset points", xytext=(7, -5), fontsize=9, color="tab:blue",
                        va="top")
    tx, ty = x_of(teacher), teacher.get("score")
    if _num(tx) and _num(ty):
        ax.plot([tx], [ty], "*", color="tab:red", markersize=16, alpha=0.75, label=teacher.get("label", "teacher"),
                zorder=2)
        ax.annotate(teacher.get("label", "teacher"), (tx, ty), textcoords="offset points", xytext=(7, 5),
                    fontsize=9, color="tab:red", va="bottom")
    ys = [p[1] for p in pts] + ([ty] if _num(ty) and _num(tx) else [])
    xs = [p[0] for p in pts] + ([tx] if _num(ty) and _num(tx) else [])
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


def read_json(path, what):
    from .errors import UserError
    if not os.path.isfile(path):
        raise UserError(f"{what} {path}: no such file")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"{what} {path}: not readable JSON ({e})")
