"""The plot of a compression report (utils/report.py): dev metric against
latency (or FLOPs), FP32 sub-networks and INT8 models as two series, the
teacher as a star, a compress.py budget as lines and the chosen entry circled.
"""
from .publish import staged_file
from .report import _label, _lat, _num, si


def plot(path, rows, teacher, metric_name, batch_size, title=None, budget=None, chosen=None):
    """Metric against latency at ``batch_size`` (or GFLOPs if None); INT8
    rows (``precision`` "int8") as a second series; with a ``budget``, its
    latency limit (vertical) and metric floor (horizontal) drawn, the
    ``chosen`` entry circled."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x_of, xlabel = _x_axis(rows, teacher, batch_size)
    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=120)
    pts = _draw_rows(ax, rows, x_of)
    tx, ty = x_of(teacher), teacher.get("score")
    if _num(tx) and _num(ty):
        ax.plot([tx], [ty], "*", color="tab:red", markersize=16, alpha=0.75, label=teacher.get("label", "teacher"),
                zorder=2)
        ax.annotate(teacher.get("label", "teacher"), (tx, ty), textcoords="offset points", xytext=(7, 5),
                    fontsize=9, color="tab:red", va="bottom")
        pts = pts + [(tx, ty, None)]
    _draw_budget(ax, rows, teacher, x_of, budget, chosen, batch_size)
    _set_limits(ax, pts, budget, batch_size, ty)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(metric_name)
    ax.set_title(title or f"{metric_name} vs {'latency' if batch_size is not None else 'FLOPs'}")
    ax.grid(True, alpha=0.3)
    if pts:
        ax.legend(loc="lower right")
    fig.tight_layout()
    with staged_file(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def _x_axis(rows, teacher, batch_size):
    """(x of an entry, axis label): latency at ``batch_size``, else FLOPs."""
    flops = [e.get("flops") for e in list(rows) + [teacher] if _num(e.get("flops"))]
    unit, scale = ("GFLOPs", 1e9) if not flops or max(flops) >= 1e9 else ("MFLOPs", 1e6)

    def x_of(e):
        if batch_size is not None:
            return _lat(e, batch_size)
        return e["flops"] / scale if _num(e.get("flops")) else None

    return x_of, (f"latency at batch {batch_size} (ms, median)" if batch_size is not None
                  else f"{unit} per example")


def _draw_rows(ax, rows, x_of):
    """FP32 and INT8 series; the (x, y, label) points drawn."""
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
    return pts


def _set_limits(ax, pts, budget, batch_size, t_score):
    """Axes around the points (and the budget lines, kept in view)."""
    ys, xs = [p[1] for p in pts], [p[0] for p in pts]
    if ys and budget:
        if batch_size is not None and _num(budget.get("latency_ms")):
            xs.append(budget["latency_ms"])
        if _num(budget.get("max_drop")) and _num(t_score):
            ys.append(t_score - budget["max_drop"])
    if not ys:
        ax.text(0.5, 0.5, "no evaluated point to plot", ha="center", va="center", transform=ax.transAxes)
        return
    lo, hi = min(ys), max(ys)
    pad = max((hi - lo) * 0.15, 0.005)
    ax.set_ylim(lo - pad, hi + pad)
    xlo, xhi = min(xs), max(xs)
    xpad = max((xhi - xlo) * 0.12, 0.05 * abs(xhi) or 0.1)
    ax.set_xlim(max(0, xlo - xpad), xhi + 2 * xpad)


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
