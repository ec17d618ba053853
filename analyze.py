"""Parameters and FLOPs of a BERT per component (embeddings, attention, FFN,
pooler+classifier; LayerNorms counted with their component).

    python analyze.py --config bert-base --widths 1.0 2/3 1/2
    python analyze.py --model_dir out/SST-2-ofa/width_0.5000          # trained widths of an OFA checkpoint
    python analyze.py --model_dir out/SST-2-ofa/dynamic_0.5           # a pruned (exported) model as it is
    python analyze.py --static_model out/SST-2-ofa/static_0.5/model   # shapes read from a static program
    python analyze.py --config my_config.json --seq_len 256 --output analysis.json

Sources (exactly one):
  --model_dir D    config.json of a model directory; pruned shapes recorded in
                   compression_suite.heads_per_layer / ffn_per_layer are honoured.
                   For an OFA checkpoint (compression_suite.supernet) the default
                   widths are the trained ones.
  --config C       bert-base / bert-large (built in) or a config JSON file.
  --static_model P a Paddle static inference model PREFIX (.pdmodel).
--widths W ...     widths (decimals or fractions) of a full-size model, snapped to
                   whole heads like the training scripts (heads = round(w * H)).

FLOPs = 2 x multiply-adds of one forward of ONE example of --seq_len tokens,
matrix products only (Q/K/V, attention scores and weighted sum, output
projection, FFN, pooler, classifier); embedding lookups count 0.
"""
import utils  # noqa: F401  (first: stack fixes before paddle is imported)

import argparse
import os

from utils import analysis
from utils.errors import UserError, run_main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model_dir", help="a model directory (config.json)")
    src.add_argument("--config", help="bert-base, bert-large, or a config JSON file")
    src.add_argument("--static_model", help="static inference model prefix (PREFIX.pdmodel)")
    p.add_argument("--widths", nargs="+", default=None,
                   help="widths of the full-size model (default: the trained widths of an OFA checkpoint, "
                        "else the model as it is)")
    p.add_argument("--seq_len", type=int, default=128, help="tokens per example for FLOPs (default 128)")
    p.add_argument("--num_labels", type=int, default=None, help="override the classifier size of the config")
    p.add_argument("--output", default=None, help="write the table as JSON to this file")
    args = p.parse_args(argv)
    if args.seq_len < 1:
        raise UserError(f"--seq_len must be positive, got {args.seq_len}")
    if args.num_labels is not None and args.num_labels < 1:
        raise UserError(f"--num_labels must be positive, got {args.num_labels}")
    return args


def build(args):
    """(title, base shape, [shapes to analyse], source description)."""
    trained = None
    if args.model_dir:
        if not os.path.isdir(args.model_dir):
            raise UserError(f"--model_dir {args.model_dir}: not a directory")
        cfg = analysis.read_config_file(args.model_dir)
        base = analysis.shape_from_config(cfg, source=args.model_dir)
        suite = cfg.get(analysis.SUITE_KEY) or {}
        trained = (suite.get("supernet") or {}).get("widths")
        source = {"model_dir": os.path.abspath(args.model_dir)}
    elif args.config:
        base = analysis.builtin_or_file(args.config)
        source = {"config": args.config}
    else:
        try:
            base = analysis.shape_from_static(args.static_model)
        except ValueError as e:
            raise UserError(f"--static_model: {e}")
        source = {"static_model": os.path.abspath(args.static_model)}
    if args.num_labels:
        base.num_labels = args.num_labels
    widths = args.widths if args.widths is not None else trained
    if widths:
        if args.static_model:
            raise UserError("--widths: a static model has fixed shapes; analyse its source model directory instead")
        shapes = [analysis.at_width(base, w) for w in widths]
        if args.widths is None:
            source["widths_from"] = "compression_suite.supernet.widths (trained widths)"
    else:
        shapes = [base]
    return base, shapes, source


def main(argv=None):
    args = parse_args(argv)
    base, shapes, source = build(args)
    full = analysis.BertShape(**dict(base.__dict__, heads_per_layer=[base.num_attention_heads] * base.num_layers,
                                     ffn_per_layer=[base.intermediate_size] * base.num_layers, extra={}))
    rows = [analysis.analyze(s, args.seq_len, reference=full) for s in shapes]
    title = (f"{base.name}: {full.describe()}; FLOPs of one example of {args.seq_len} tokens "
             f"(ratios vs the full-size model)")
    print(analysis.format_table(rows, title), flush=True)
    if args.output:
        out = {"source": source, "seq_len": args.seq_len, "batch": 1,
               "config": {"vocab_size": base.vocab_size, "hidden_size": base.hidden_size,
                          "num_hidden_layers": base.num_layers, "num_attention_heads": base.num_attention_heads,
                          "head_dim": base.head_dim, "intermediate_size": base.intermediate_size,
                          "max_position_embeddings": base.max_position_embeddings,
                          "type_vocab_size": base.type_vocab_size, "num_labels": base.num_labels,
                          "token_level": base.token_level},
               "full": {"params": analysis.count(full, args.seq_len)["params"]["total"],
                        "flops": analysis.count(full, args.seq_len)["flops"]["total"]},
               "rows": rows}
        d = os.path.dirname(os.path.abspath(args.output))
        os.makedirs(d, exist_ok=True)
        from utils.publish import write_json_atomic
        write_json_atomic(args.output, out)
        print(f"wrote {args.output}")
    return rows


if __name__ == "__main__":
    run_main(main)
