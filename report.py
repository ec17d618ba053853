"""Report of an OFA run: width, parameters, FLOPs, dev metric and latency per
width plus the teacher, as OUT/report.md, OUT/report.json and OUT/report.png
(metric against latency, or against FLOPs without a benchmark).

    python report.py --ofa_dir out/SST-2-ofa
    python report.py --ofa_dir out/SST-2-ofa --benchmark out/bench.json [--batch_size 16]

The widths, parameter counts and scores come from OFA_DIR/all_results.json,
FLOPs from the model config (OFA_DIR/final/config.json or a width_*/ one) at
--seq_len tokens (default: the benchmark's sequence length, else 128).

Which benchmarked model is which sub-network (first rule that applies):
  1. --map NAME=WIDTH, NAME=WIDTH@DEPTH or NAME=teacher  (decimals or
     fractions: w05=1/2, w05d05=1/2@1/2)
  2. a model named "teacher" is the teacher
  3. the width and depth recorded with the static model (PREFIX.info.json,
     written by export_model.py and kept in the benchmark JSON)
  4. a name like "w0.5000", "width_0.5", "w1/2" (depth 1)
Models that match no trained sub-network, and INT8 models (unless --map names
them), are left out (with a line saying so).  Without a teacher model, the
teacher's latency is the width-1.0 model's (same graph shapes).  The OFA
scripts write the same report, without latencies, when they finish.
"""
import utils  # noqa: F401  (first: stack fixes before paddle is imported)

import argparse
import logging
import sys

from utils.errors import UserError, run_main
from utils.report import build_ofa_report, read_json

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


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ofa_dir", required=True, help="output directory of an OFA script (all_results.json)")
    p.add_argument("--benchmark", default=None, help="JSON written by benchmark.py --output")
    p.add_argument("--teacher_dir", default=None,
                   help="the teacher's model directory: its config.json gives the teacher's parameters and FLOPs "
                        "(default: the full-size config of --ofa_dir)")
    p.add_argument("--map", nargs="+", default=[], metavar="NAME=WIDTH[@DEPTH]",
                   help="benchmark model name -> width (and depth), or 'teacher'")
    p.add_argument("--batch_size", type=int, default=None,
                   help="latency plotted (default: the smallest benchmarked batch size)")
    p.add_argument("--seq_len", type=int, default=None, help="tokens per example for FLOPs")
    p.add_argument("--metric_name", default=None, help="label of the dev metric (default: from the results)")
    p.add_argument("--title", default=None)
    p.add_argument("--output_dir", default=None, help="where the report goes (default: --ofa_dir)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    setup_logging()
    if args.batch_size is not None and not args.benchmark:
        raise UserError("--batch_size needs --benchmark")
    bench = read_json(args.benchmark, "--benchmark") if args.benchmark else None
    paths = build_ofa_report(args.ofa_dir, bench=bench, bench_path=args.benchmark, explicit_map=args.map,
                             batch_size=args.batch_size, seq_len=args.seq_len, metric_name=args.metric_name,
                             title=args.title, output_dir=args.output_dir, teacher_dir=args.teacher_dir)
    with open(paths["md"], encoding="utf-8") as f:
        print(f.read(), flush=True)
    print(f"wrote {paths['md']}, {paths['json']} and {paths['png']}", flush=True)
    return paths


if __name__ == "__main__":
    run_main(main)
