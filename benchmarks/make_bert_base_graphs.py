"""Static inference graphs of a bert-base-sized BertForSequenceClassification
with random weights, at full width and pruned widths, for benchmark.py (no
download: latency does not depend on the weights' values).

    python benchmarks/make_bert_base_graphs.py [--output_dir out/bert_base_graphs] [--widths 1.0 2/3 1/2]
    python benchmark.py --models out/bert_base_graphs/teacher/model out/bert_base_graphs/w0.6667/model \\
        out/bert_base_graphs/w0.5000/model --batch_sizes 1 16 --output out/bench_bert_base

The pruned models are cut from the full one exactly as export_model.py cuts an
OFA width (utils.extract.extract_subnet: apply_pruned_shapes + the leading
heads / FFN neurons), and saved with utils.inference.save_static, each with a
PREFIX.info.json recording its width.  Width 1.0 is written as ``teacher``,
the others as ``w{width:.4f}``.
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import utils  # noqa: F401,E402  (before paddle: zlib fix)

import argparse  # noqa: E402
import time  # noqa: E402

from utils import inference  # noqa: E402
from utils.extract import extract_subnet, param_count  # noqa: E402
from utils.widths import snap_widths  # noqa: E402
from utils.analysis import BERT_BASE  # noqa: E402
from utils.errors import run_main  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output_dir", default=os.path.join(ROOT, "out", "bert_base_graphs"))
    p.add_argument("--widths", nargs="+", default=["1.0", "2/3", "1/2"])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import paddle
    from paddlenlp.transformers import BertConfig, BertForSequenceClassification
    paddle.set_device("cpu")
    paddle.seed(args.seed)
    config = BertConfig(**BERT_BASE, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    full = BertForSequenceClassification(config)
    full.eval()
    widths = snap_widths(args.widths, config.num_attention_heads, config.intermediate_size, flag="--widths")
    for w in widths:
        t0 = time.time()
        name = "teacher" if w.ratio == 1.0 else f"w{w.tag()}"
        model = full if w.ratio == 1.0 else extract_subnet(full, w, config, "classification")
        model.eval()
        prefix = os.path.join(args.output_dir, name, "model")
        os.makedirs(os.path.dirname(prefix), exist_ok=True)
        inference.save_static(model, prefix)
        inference.write_info(prefix, {"task_type": "classification", "task_name": None, "label_list": ["0", "1"],
                                      "max_seq_length": 128, "width": w.ratio, "random_weights": True})
        print(f"{name}: width {w.ratio:.4f}, {w.heads} heads, FFN {w.ffn}, {param_count(model):,} "
              f"parameters -> {prefix} ({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    run_main(main)
