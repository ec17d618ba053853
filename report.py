"""Report of an OFA run: width, parameters, FLOPs, dev metric and latency per
width plus the teacher, as OUT/report.md, OUT/report.json and OUT/report.png
(metric against latency, or against FLOPs without a benchmark).

    python report.py --ofa_dir out/SST-2-ofa
    python report.py --ofa_dir out/SST-2-ofa --benchmark out/bench.json [--batch_size 16]

The widths, parameter counts and scores come from OFA_DIR/all_results.json,
FLOPs from the model config (OFA_DIR/final/config.json or a width_*/ one) at
--seq_len tokens (default: the benchmark's sequence length, else 128).

Which benchmarked model is which width (first rule that applies):
  1. --map NAME=WIDTH or NAME=teacher  (WIDTH as a decimal or fraction: w05=1/2)
  2. a model named "teacher" is the teacher
  3. the width recorded with the static model (PREFIX.info.json "width", written
     by export_model.py and kept in the benchmark JSON)
  4. a name like "w0.5000", "width_0.5", "w1/2"
Models that match no width are left out (with a warning).  Without a teacher
model, the teacher's latency is the width-1.0 model's (same graph shapes).
"""
import utils  # noqa: F401  (first: stack fixes before paddle is imported)

import argparse
import logging
import os
import re
import sys

from utils import analysis
from utils.elastic import parse_width
from utils.errors import UserError, run_main
from utils.report import read_json, write_report

logger = logging.getLogger("bert_suite")


def setup_logging():
    """The suite's log format on stdout (without importing paddlenlp, which
    utils.training.setup_logging does to quiet it: this script never uses it)."""
    if not logger.handlers:
        h = logging.StreamHandler(sys.stdout)
        h.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s %(message)s", "%H:%M:%S"))
        logger.addHandler(h)
    logger.setLevel(logging.INFO)
    logger.propagate = False
NAME_WIDTH = re.compile(r"^w(?:idth)?[_-]?(\d+(?:\.\d*)?(?:/\d+)?)$", re.IGNORECASE)
TOL = 1e-3


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ofa_dir", required=True, help="output directory of run_glue_ofa.py (all_results.json)")
    p.add_argument("--benchmark", default=None, help="JSON written by benchmark.py --output")
    p.add_argument("--map", nargs="+", default=[], metavar="NAME=WIDTH",
                   help="benchmark model name -> width (or 'teacher')")
    p.add_argument("--batch_size", type=int, default=None,
                   help="latency plotted (default: the smallest benchmarked batch size)")
    p.add_argument("--seq_len", type=int, default=None, help="tokens per example for FLOPs")
    p.add_argument("--metric_name", default=None, help="label of the dev metric (default: from the results)")
    p.add_argument("--title", default=None)
    p.add_argument("--output_dir", default=None, help="where the report goes (default: --ofa_dir)")
    return p.parse_args(argv)


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
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UserError(f"--map {item}: expected NAME=WIDTH or NAME=teacher")
        if value.strip().lower() == "teacher":
            out[name] = "teacher"
            continue
        try:
            out[name] = parse_width(value)
        except ValueError as e:
            raise UserError(f"--map {item}: {e}")
    return out


def target_of(model, explicit):
    name = model["name"]
    if name in explicit:
        return explicit[name], "--map"
    if name.lower() == "teacher":
        return "teacher", "name"
    if model.get("width") is not None:
        return float(model["width"]), "recorded width"
    m = NAME_WIDTH.match(name)
    if m:
        try:
            return parse_width(m.group(1)), "name"
        except ValueError:
            pass
    return None, None


def latencies(bench, explicit, widths):
    """({target: {bs: median ms}}, {target: model name}); target = a width of
    ``widths`` or "teacher"."""
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
        target, how = target_of(m, explicit)
        if target is None:
            logger.warning("benchmark model %s: no width for it (name it teacher / w0.5000, or --map %s=WIDTH); "
                           "left out", m["name"], m["name"])
            continue
        if target != "teacher":
            match = [w for w in widths if abs(w - target) < TOL]
            if not match:
                logger.warning("benchmark model %s has width %.4f (%s), which is not a width of this run; left out",
                               m["name"], target, how)
                continue
            target = match[0]
        if target in found:
            logger.warning("benchmark models %s and %s both map to %s; using %s", source[target], m["name"],
                           target, source[target])
            continue
        found[target], source[target] = medians.get(m["name"], {}), m["name"]
    return found, source


def main(argv=None):
    args = parse_args(argv)
    setup_logging()
    if args.batch_size is not None and not args.benchmark:
        raise UserError("--batch_size needs --benchmark")
    if not os.path.isdir(args.ofa_dir):
        raise UserError(f"--ofa_dir {args.ofa_dir}: not a directory")
    table = read_json(os.path.join(args.ofa_dir, "all_results.json"), "--ofa_dir")
    if not isinstance(table, dict) or not table.get("rows"):
        raise UserError(f"--ofa_dir {args.ofa_dir}: all_results.json has no rows (did the OFA run finish?)")
    bench = read_json(args.benchmark, "--benchmark") if args.benchmark else None
    if bench is not None and not isinstance(bench.get("rows"), list):
        raise UserError(f"--benchmark {args.benchmark}: not a benchmark.py JSON (no rows)")
    seq_len = args.seq_len or ((bench or {}).get("settings", {}).get("seq_len")) or 128

    cfg_path = find_config(args.ofa_dir, table)
    shape = None
    if cfg_path:
        shape = analysis.shape_from_config(analysis.read_config_file(cfg_path), source=cfg_path)
    else:
        logger.warning("no config.json under %s: FLOPs left out", args.ofa_dir)

    rows = []
    for r in table["rows"]:
        row = {"width": float(r["width"]), "heads": r.get("heads"), "ffn": r.get("ffn"), "params": r.get("params"),
               "score": r.get("score"), "step": r.get("step"), "dir": r.get("dir"), "flops": None,
               "label": f"width {r['width']:.4f}"}
        if shape is not None:
            c = analysis.count(analysis.at_width(shape, row["width"]), seq_len)
            row["flops"] = c["flops"]["total"]
            if row["params"] is not None and row["params"] != c["params"]["total"]:
                logger.warning("width %.4f: all_results.json says %s parameters, the config gives %s",
                               row["width"], row["params"], c["params"]["total"])
        rows.append(row)
    teacher = {"label": "teacher", "score": table.get("teacher_score")}
    if shape is not None:
        c = analysis.count(shape, seq_len)
        teacher.update(params=c["params"]["total"], flops=c["flops"]["total"], heads=shape.num_attention_heads,
                       ffn=shape.intermediate_size)

    notes = [f"Scores: {args.ofa_dir}/all_results.json (best dev score of each width). "
             f"FLOPs at {seq_len} tokens."]
    if bench is not None:
        found, source = latencies(bench, parse_map(args.map), [r["width"] for r in rows])
        for row in rows:
            if row["width"] in found:
                row["latency_ms"], row["benchmark_model"] = found[row["width"]], source[row["width"]]
        if "teacher" in found:
            teacher["latency_ms"], teacher["benchmark_model"] = found["teacher"], source["teacher"]
        else:
            full = [w for w in found if w != "teacher" and abs(w - 1.0) < TOL]
            if full:
                teacher["latency_ms"] = found[full[0]]
                teacher["latency_note"] = (f"measured on {source[full[0]]}, the width-1.0 graph "
                                           f"(same shapes as the teacher)")
        s = bench.get("settings", {})
        notes.append(f"Latency: median of {s.get('repeats')} runs, Paddle Inference {s.get('paddle')} on "
                     f"{s.get('device')}, {s.get('threads')} threads, oneDNN {'on' if s.get('mkldnn') else 'off'}, "
                     f"seq {s.get('seq_len')} ({args.benchmark}).")
        if not found:
            logger.warning("no benchmarked model matched a width of this run: plotting against FLOPs")
    try:
        paths = write_report(args.output_dir or args.ofa_dir, rows, teacher,
                             metric_name=args.metric_name or metric_name_of(table),
                             batch_size=args.batch_size, title=args.title, notes=notes)
    except ValueError as e:
        raise UserError(f"--batch_size: {e}")
    with open(paths["md"], encoding="utf-8") as f:
        print(f.read(), flush=True)
    print(f"wrote {paths['md']}, {paths['json']} and {paths['png']}", flush=True)
    return paths


if __name__ == "__main__":
    run_main(main)
