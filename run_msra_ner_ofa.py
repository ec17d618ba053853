"""Stage 2 for NER: once-for-all width-adaptive distillation of a fine-tuned
token-classification teacher (PaddleSlim OFA + DynaBERT head/neuron
importance reordering).

    python run_msra_ner_ofa.py --model_name_or_path out/msra_ner/model_best --data_dir data/msra \
        --output_dir out/msra_ner_ofa --width_mult_list 1.0 0.75 0.5 --batch_size 32 --learning_rate 2e-5

Same recipe as run_glue_ofa.py: load the teacher; convert a copy into a
supernet over the widths (snapped to whole heads); compute head and
FFN-neuron importance on held-out training data and reorder by it; check that
the reordered full-width supernet still equals the teacher; distil every
width against the teacher (which runs once per batch) with the soft
cross-entropy and hidden-state MSE taken over real tokens only.

Selection uses DEV only: the best checkpoint of each width goes to
``output_dir/model_{width}`` (upstream names, e.g. ``model_0.5``; full-size
reordered weights, cut a width out with export_model.py) and a last one to
``output_dir/final``.  At the end the TEST split is evaluated once per width
(its best checkpoint, cut to that width) and reported separately, beside the
teacher's (taken from the teacher's ``test_results.json`` when run_msra_ner.py
recorded it for these weights and these test windows, else scored here).
Evaluations go to ``results.json``, the per-width table to ``all_results.json``.
The labels are the teacher's (its classifier order).
"""
import utils  # noqa: F401  (first: stack fixes before paddle is imported)

import argparse
import logging
import os

from utils import ner_data, ner_encode, ner_metrics, ofa_run, runs, tasks, train_args
from utils.errors import run_main
from utils.importance import split_importance
from utils.losses import token_loss, token_mask
from utils.modeling import load_model
from utils.publish import write_json_atomic
from utils.widths import snap_widths

logger = logging.getLogger("bert_suite")
KIND = "token_classification"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    tasks.add_ner_args(p)
    train_args.add_common_args(p, epochs=6.0, logging_steps=10, save_steps=100)
    ofa_run.add_ofa_args(p)
    args = p.parse_args(argv)
    args.max_seq_length = train_args.check_common_args(args)
    tasks.check_ner_args(args)
    ofa_run.check_ofa_args(args)
    return args


def dir_name(w):
    """Upstream's ``model_{width}`` (``model_1.0``, ``model_0.5``; 5/6 -> ``model_0.8333``)."""
    return f"model_{round(w.requested, 4)}"


def format_test_table(test, rows):
    """The test metrics of the teacher and every sub-network (``rows``: the
    final table's rows, in the order of ``test["widths"]``)."""
    lines = [f"{'test':>13} {'precision':>10} {'recall':>10} {'f1':>10}  dir"]
    entries = [("teacher", test["teacher"], "")] + [(tag, m, row["dir"])
                                                    for (tag, m), row in zip(test["widths"].items(), rows)]
    for name, m, d in entries:
        lines.append(f"{name:>13} {m['precision']:>10.4f} {m['recall']:>10.4f} {m['f1']:>10.4f}  {d}")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    requested = ofa_run.setup(args)
    label_list = ner_data.resolve_label_list(args.label_list, args.model_name_or_path)
    data = ner_data.load_ner(args.data_dir, args.dev_ratio, args.seed, label_list)
    if label_list is None:
        logger.warning("%s records no label list: the labels are taken from the data (%s); they must be in the "
                       "order of the teacher's classifier (else pass --label_list)", args.model_name_or_path,
                       " ".join(data.label_list))
    label_list = data.label_list
    teacher, tokenizer, config = load_model(args.model_name_or_path, KIND, len(label_list), require_head=True,
                                            task_name=ner_data.TASK_NAME, expect_task_type=KIND)
    widths = snap_widths(requested, config.num_attention_heads, config.intermediate_size)
    feats = {s: ner_encode.encode_ner(exs, tokenizer, args.max_seq_length, label_list, args.split_long, s)
             for s, exs in data.splits.items()}
    train_feats, imp_feats = split_importance(feats["train"], feats["dev"], args.importance_split,
                                              args.importance_ratio, args.importance_max_examples, args.seed)
    collate_fn = ner_encode.NerBatcher(tokenizer.pad_token_id)
    task = ofa_run.OFATask(
        kind=KIND, num_labels=len(label_list), collate_fn=collate_fn, loss_fn=token_loss,
        evaluate=lambda forward, sets: ner_metrics.evaluate_ner(forward, sets, collate_fn, label_list, args.batch_size),
        dir_name=dir_name, metric_name="f1", token_mask_fn=token_mask,
        suite_info={"task_type": KIND, "task_name": ner_data.TASK_NAME, "label_list": list(label_list),
                    "max_seq_length": args.max_seq_length, "data_split": ner_data.split_record(args)})
    teacher_test = None
    if "test" in feats and os.path.isdir(args.model_name_or_path):   # scored by run_msra_ner.py already?
        teacher_test = ner_metrics.recorded_test(args.model_name_or_path, feats["test"], label_list)
    table = ofa_run.run(args, task, teacher, tokenizer, config, widths, train_feats, imp_feats,
                        {"dev": feats["dev"]}, feats.get("test"), teacher_test=teacher_test)
    if table is not None:  # master only
        table.setdefault("test", None)
        if table["test"] is not None:
            print(format_test_table(table["test"], table["rows"]), flush=True)
        table["label_list"] = list(label_list)
        write_json_atomic(os.path.join(args.output_dir, "all_results.json"), table)
    runs.end_run(args.output_dir)


if __name__ == "__main__":
    run_main(main)
