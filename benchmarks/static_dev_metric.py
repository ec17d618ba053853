"""The dev metric of exported static models, run with Paddle Inference
exactly as they are deployed (INT8 models with oneDNN's INT8 kernels).

    python benchmarks/static_dev_metric.py --data_dir out/demo/data --models out/figures/export/*/static/model

Uses quantize.py's task plumbing, ``utils.quant_eval.QuantData`` (the task, labels and tokenizer recorded
beside each model); prints one line a model and a JSON line at the end.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import utils  # noqa: E402,F401

import argparse  # noqa: E402
import json  # noqa: E402

from utils import inference  # noqa: E402
from utils.modeling import load_tokenizer  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", required=True, help="static model prefixes")
    p.add_argument("--data_dir", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--max_seq_length", type=int, default=None,
                   help="tokens per example (default: the length the model was exported with)")
    a = p.parse_args()
    from utils.quant_eval import QuantData
    out = {}
    for prefix in a.models:
        info = inference.read_info(prefix)
        tok = load_tokenizer(os.path.join(os.path.dirname(os.path.abspath(prefix)), info["tokenizer_dir"]))
        args = argparse.Namespace(model_prefix=prefix, data_dir=a.data_dir)
        data = QuantData(args, info, tok, a.max_seq_length or int(info.get("max_seq_length") or 128), pools=False)
        pred = inference.create_predictor(prefix, threads=a.threads)
        results, score, _, seconds = data.evaluate_dev(pred, a.batch_size)
        out[prefix] = {"metric": data.metric_name, "score": score, "results": results,
                       "int8": inference.is_int8(prefix), "seconds": seconds}
        print(f"{prefix}: dev {data.metric_name} = {score:.4f}{' (INT8)' if out[prefix]['int8'] else ''}",
              flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
