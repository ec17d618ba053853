"""Choosing a deployable model under budgets (compress.py): the budgets, the
candidate table, the decision and the stage markers that make a run resumable.

The decision is a pure function of the candidate table and the budgets
(:func:`decide`): compress.py recomputes it on every run, so a changed budget
re-decides from the measured table without training or measuring again.

A candidate is a dict: ``name``, ``precision`` ("fp32" | "int8"), ``metric``
(dev, the task's main metric, higher is better), ``latency_ms`` (median at
the benchmark's batch size and length), ``size_mb`` (the static model's
files) and what the report shows (``width``, ``depth``, ``params`` ...).
"""
import json
import math
import os

from .errors import UserError

# budget key -> (flag, the candidate's value it bounds, unit)
BUDGETS = {"latency_ms": ("--latency_budget_ms", "latency_ms", "ms"),
           "size_mb": ("--size_budget_mb", "size_mb", "MB"),
           "max_drop": ("--max_metric_drop", "drop", "")}
STAGE_DIR = "stages"
RUN_FILE = "compress.json"


# --------------------------------------------------------------------------- budgets
def check_budgets(args):
    """Budgets and the benchmark's shape, before anything is read or written.
    Latency and size budgets must be positive; the metric drop may be 0
    ("lose nothing") but not negative.  At least one budget is required."""
    for flag, value in (("--latency_budget_ms", args.latency_budget_ms), ("--size_budget_mb", args.size_budget_mb),
                        ("--latency_budget_ratio", args.latency_budget_ratio)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise UserError(f"{flag} must be a positive number, got {value:g}")
    if args.max_metric_drop is not None and not (math.isfinite(args.max_metric_drop) and args.max_metric_drop >= 0):
        raise UserError(f"--max_metric_drop must be >= 0 (absolute points of the dev metric, 0.01 = 1 point), "
                        f"got {args.max_metric_drop:g}")
    if args.latency_budget_ms is not None and args.latency_budget_ratio is not None:
        raise UserError("--latency_budget_ms and --latency_budget_ratio: give one")
    if all(v is None for v in (args.latency_budget_ms, args.latency_budget_ratio, args.size_budget_mb,
                               args.max_metric_drop)):
        raise UserError("give at least one budget: --latency_budget_ms (or --latency_budget_ratio), "
                        "--size_budget_mb, --max_metric_drop")
    if args.batch_size < 1:
        raise UserError(f"--batch_size (of the latency benchmark) must be >= 1, got {args.batch_size}")


def check_seq_len(seq_len, max_positions, flag="--max_seq_length"):
    if seq_len < 3:
        raise UserError(f"{flag} must be at least 3 ([CLS], a token, [SEP]), got {seq_len}")
    if max_positions and seq_len > max_positions:
        raise UserError(f"{flag} {seq_len} is longer than the model's {max_positions} position embeddings")


def limits(args, teacher_latency_ms):
    """{budget key: limit}; a --latency_budget_ratio becomes ms of the
    teacher's latency measured in the same benchmark."""
    out = {}
    if args.latency_budget_ms is not None:
        out["latency_ms"] = args.latency_budget_ms
    elif args.latency_budget_ratio is not None:
        out["latency_ms"] = args.latency_budget_ratio * teacher_latency_ms
    if args.size_budget_mb is not None:
        out["size_mb"] = args.size_budget_mb
    if args.max_metric_drop is not None:
        out["max_drop"] = args.max_metric_drop
    return out


# --------------------------------------------------------------------------- the decision
def overshoot(cand, lims, teacher_metric):
    """{budget key: candidate value - limit} (> 0: over the budget)."""
    vals = {"latency_ms": cand.get("latency_ms"), "size_mb": cand.get("size_mb"),
            "max_drop": None if cand.get("metric") is None else teacher_metric - cand["metric"]}
    return {k: (math.inf if vals[k] is None else vals[k] - lim) for k, lim in lims.items()}


def decide(candidates, lims, teacher_metric):
    """The best dev metric among the candidates that meet every budget (ties:
    the faster, then the smaller).  Returns a dict: ``chosen`` (name or None),
    ``meets`` {name: bool}, ``over`` {name: {budget: amount over}}, and when
    nothing meets the budgets ``closest`` (the candidate whose worst
    overshoot, relative to its budget, is smallest) and ``failed`` (the
    budgets the closest misses, with the amounts)."""
    over = {c["name"]: overshoot(c, lims, teacher_metric) for c in candidates}
    meets = {n: all(v <= 1e-12 for v in o.values()) for n, o in over.items()}
    ok = [c for c in candidates if meets[c["name"]]]
    out = {"limits": dict(lims), "teacher_metric": teacher_metric, "meets": meets, "over": over,
           "chosen": None, "closest": None, "failed": {}}
    if ok:
        best = max(ok, key=lambda c: (c["metric"], -(c.get("latency_ms") or 0), -(c.get("size_mb") or 0)))
        out["chosen"] = best["name"]
        return out

    def relative(c):
        o = over[c["name"]]
        return max(max(v, 0.0) / max(lims[k], 1e-9) for k, v in o.items())
    if candidates:
        closest = min(candidates, key=lambda c: (relative(c), -(c.get("metric") or 0)))
        out["closest"] = closest["name"]
        out["failed"] = {k: v for k, v in over[closest["name"]].items() if v > 1e-12}
    return out


def describe_budgets(lims, batch_size, seq_len, ratio=None):
    parts = []
    if "latency_ms" in lims:
        r = f" ({ratio:g} x the teacher's)" if ratio is not None else ""
        parts.append(f"latency <= {lims['latency_ms']:.2f} ms{r} at batch {batch_size}, length {seq_len}")
    if "size_mb" in lims:
        parts.append(f"size <= {lims['size_mb']:g} MB")
    if "max_drop" in lims:
        parts.append(f"dev metric at most {lims['max_drop']:g} below the teacher's")
    return "; ".join(parts)


def describe_failure(decision, latency_ratio=None):
    """One line per failed budget of the closest candidate."""
    lims = decision["limits"]
    lines = []
    for k, amount in decision["failed"].items():
        flag, _, unit = BUDGETS[k]
        if k == "latency_ms" and latency_ratio is not None:
            flag = f"--latency_budget_ratio {latency_ratio:g} (x the teacher's latency) ="
        if math.isinf(amount):
            lines.append(f"{flag}: {decision['closest']} has no measured value")
            continue
        value = lims[k] + amount
        lines.append(f"{flag} {lims[k]:.4g} {unit}: {decision['closest']} is {value:.4g} {unit}, over by "
                     f"{amount:.4g} {unit} ({100 * amount / max(lims[k], 1e-9):.0f}%)")
    return lines


def verdict(decision, name):
    """"chosen", "yes" or "no (latency_ms +1.2)" for one candidate."""
    if name == decision["chosen"]:
        return "chosen"
    if decision["meets"][name]:
        return "yes"
    return "no (" + ", ".join(f"{k} +{v:.3g}" for k, v in decision["over"][name].items() if v > 1e-12) + ")"


def format_table(candidates, decision, metric_name):
    """The candidate table as Markdown lines (the chosen one marked)."""
    head = ["candidate", "precision", "width", "depth", "params", metric_name, "vs teacher", "latency ms",
            "size MB", "meets budgets"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    t = decision["teacher_metric"]
    for c in candidates:
        name = c["name"]
        lines.append("| " + " | ".join([
            name, c.get("precision", "fp32"), _f(c.get("width"), ".4f"), _f(c.get("depth"), ".4f"),
            f"{c['params']:,}" if c.get("params") else "-", _f(c.get("metric"), ".4f"),
            _f(None if c.get("metric") is None else c["metric"] - t, "+.4f"), _f(c.get("latency_ms"), ".2f"),
            _f(c.get("size_mb"), ".2f"), verdict(decision, name)]) + " |")
    return lines


def _f(v, spec):
    return "-" if v is None else format(v, spec)


# --------------------------------------------------------------------------- run identity and stage markers
def check_output_dir(output_dir, identity):
    """An output directory is new (absent or empty) or holds a compress.py
    run with the same identity (teacher, data, grid, training settings).
    Anything else is another run's: refused (nothing is overwritten)."""
    if not os.path.exists(output_dir):
        return "new"
    if not os.path.isdir(output_dir):
        raise UserError(f"--output_dir {output_dir} is a file")
    entries = os.listdir(output_dir)
    if not entries:
        return "new"
    run_file = os.path.join(output_dir, RUN_FILE)
    if not os.path.isfile(run_file):
        raise UserError(f"--output_dir {output_dir} is not empty and holds no {RUN_FILE}: not a compress.py run "
                        f"(choose a new or empty directory)")
    try:
        with open(run_file, encoding="utf-8") as f:
            saved = json.load(f)["identity"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{run_file}: unreadable ({e}); choose a new output directory")
    differ = sorted(k for k in set(saved) | set(identity) if saved.get(k) != identity.get(k))
    if differ:
        k = differ[0]
        raise UserError(f"--output_dir {output_dir} holds another run's stages ({RUN_FILE}: {k} = {saved.get(k)!r}, "
                        f"this run: {identity.get(k)!r}" + (f"; also {', '.join(differ[1:])}" if differ[1:] else "")
                        + "): use a new directory, or the flags of that run (budgets may change freely)")
    return "resume"


def write_run_file(output_dir, identity):
    from .publish import write_json_atomic
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, RUN_FILE)
    if not os.path.isfile(path):
        write_json_atomic(path, {"identity": identity})


class Stages:
    """Completion markers ``OUT/stages/NAME.json``: a stage whose marker
    exists finished; the marker holds what later stages need from it."""

    def __init__(self, output_dir):
        self.dir = os.path.join(output_dir, STAGE_DIR)

    def path(self, name):
        return os.path.join(self.dir, name.replace("/", "_") + ".json")

    def get(self, name):
        p = self.path(name)
        if not os.path.isfile(p):
            return None
        with open(p, encoding="utf-8") as f:
            return json.load(f)

    def mark(self, name, record):
        from .publish import write_json_atomic
        os.makedirs(self.dir, exist_ok=True)
        write_json_atomic(self.path(name), record)
        return record


def model_mb(prefix):
    """MB (10^6 bytes) of a static model's program and parameters."""
    total = 0
    for ext in (".pdmodel", ".json", ".pdiparams"):
        if os.path.isfile(prefix + ext):
            total += os.path.getsize(prefix + ext)
    return total / 1e6
