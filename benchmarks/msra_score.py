"""Entity F1 (seqeval) of a trained NER model directory on the MSRA test
split: for a teacher run that was stopped before run_msra_ner.py scored the
test split itself (a long run cut short; its model_best/ is complete).

    python benchmarks/msra_score.py --model_dir out/msra/teacher/model_best --data_dir out/msra/data \
        [--max_seq_length 64] [--output out/msra/teacher/test_of_model_best.json]

Long sentences are split into windows, as run_msra_ner.py --split_long does.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import utils  # noqa: E402,F401

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

from utils import ner_data, ner_encode, ner_metrics  # noqa: E402
from utils.errors import UserError, run_main  # noqa: E402
from utils.modeling import load_model  # noqa: E402

KIND = "token_classification"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_dir", required=True)
    p.add_argument("--data_dir", required=True)
    p.add_argument("--max_seq_length", type=int, default=64)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--output", default=None, help="also write the result as JSON here")
    a = p.parse_args(argv)
    label_list = ner_data.saved_label_list(a.model_dir)
    data = ner_data.load_ner(a.data_dir, 0.01, 42, label_list)
    if "test" not in data.splits:
        raise UserError(f"--data_dir {a.data_dir}: no test split")
    model, tok, _ = load_model(a.model_dir, KIND, len(data.label_list), expect_task_type=KIND)
    model.eval()
    feats = ner_encode.encode_ner(data.splits["test"], tok, a.max_seq_length, data.label_list, True, "test")
    t0 = time.time()
    res, _ = ner_metrics.evaluate_ner(lambda i, s: model(i, token_type_ids=s), {"test": feats},
                                      ner_encode.NerBatcher(tok.pad_token_id), data.label_list, a.batch_size)
    out = {"model_dir": a.model_dir, "test_sentences": len(data.splits["test"]), "test": res["test"],
           "seconds": round(time.time() - t0, 1)}
    print(json.dumps(out))
    if a.output:
        with open(a.output, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    run_main(main)
