"""Stage 2: once-for-all width-adaptive distillation of a fine-tuned teacher
(PaddleSlim OFA + DynaBERT head/neuron importance reordering).

    python run_glue_ofa.py --model_name_or_path out/SST-2/best --task_name SST-2 \
        --data_dir glue_data --output_dir out/SST-2-ofa --width_mult_list 1.0 5/6 2/3 1/2

Steps: load the teacher; convert a copy into a supernet over the widths
(snapped to whole heads); compute head and FFN-neuron importance on held-out
data and reorder the supernet by it; check that the reordered full-width
supernet still equals the teacher; distil every width against the teacher in
every step.  The best checkpoint of each width goes to
``output_dir/width_{w:.4f}/`` (full-size reordered weights; cut a width out
with export_model.py), evaluations to ``results.json``, the final table to
``all_results.json``.

Own data takes the flags of run_glue.py (--train_file, --dev_file,
--test_file, --text_column, --text_pair_column, --label_column, --task_type,
--label_list, --label_delimiter); the label list defaults to the teacher's.
Multilabel logits are distilled with binary cross-entropy against the
teacher's sigmoid probabilities.

Augmented data (DynaBERT's ``--data_aug``): the OFA loss uses only the
teacher's outputs, never the labels, so extra text teaches the sub-networks
too -- augmented copies of the training set (TinyBERT's augmentation writes
``train_aug.tsv``) or unlabelled in-domain text.  ``--data_aug`` adds
``DATA_DIR/TASK/train_aug.tsv``, ``--aug_file`` any file with the training
file's text columns (a label column is allowed and ignored).  The examples
are added to the training set after the importance examples are held out;
the dev set still selects the best checkpoints.
"""
import utils  # noqa: F401  (first: stack fixes before paddle is imported)

import argparse
import logging
import os

from utils import ofa_run, runs, train_args
from utils.data import Batcher, encode, find_split_file, load_glue, read_glue_file, resolve_task
from utils.errors import UserError, run_main
from utils.evaluation import evaluate_task
from utils.importance import split_importance
from utils.losses import task_loss
from utils.modeling import load_config, load_model, suite_info
from utils.publish import write_json_atomic
from utils.tasks import OWN_DATA, add_task_args, check_task_args
from utils.widths import snap_widths

logger = logging.getLogger("bert_suite")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_task_args(p, test_file_help="optional: a labelled test file, scored once at the end for the teacher "
                                    "and the best checkpoint of every width")
    train_args.add_common_args(p, epochs=6.0, logging_steps=10, save_steps=100)
    ofa_run.add_ofa_args(p)
    a = p.add_argument_group("augmented data (distillation only: labels are not used)")
    a.add_argument("--data_aug", action="store_true",
                   help="DynaBERT's flag: also distil on DATA_DIR/TASK/train_aug.tsv")
    a.add_argument("--aug_file", default=None,
                   help="also distil on this file (TSV/CSV with the training file's text columns; a label "
                        "column is ignored): augmented or unlabelled in-domain text")
    args = p.parse_args(argv)
    if args.data_aug and args.aug_file:
        raise UserError("--data_aug and --aug_file: give one (--data_aug reads train_aug.tsv from --data_dir)")
    if args.data_aug and (not args.data_dir or args.train_file):
        raise UserError("--data_aug reads train_aug.tsv from the GLUE task's --data_dir; with own data "
                        "(--train_file) pass the file with --aug_file")
    check_task_args(args)
    args.max_seq_length = train_args.check_common_args(args)
    ofa_run.check_ofa_args(args)
    return args


def teacher_labels(task_name, task_type, model_dir):
    """Own data: the label list of a teacher fine-tuned on own data of the
    same task type (the default label list), else None."""
    if task_name or not os.path.isdir(model_dir):
        return None
    info = suite_info(load_config(model_dir))
    if info.get("task_name") != OWN_DATA or info.get("task_type") != task_type:
        return None
    return info.get("label_list") or None


def read_aug(task, data_dir, data_aug, aug_file):
    """(path, unlabelled examples) of --data_aug / --aug_file, or (None, [])."""
    if not (data_aug or aug_file):
        return None, []
    flag = "--data_aug" if data_aug else "--aug_file"
    try:
        path = find_split_file(task, data_dir, "train_aug") if data_aug else aug_file
        return os.path.abspath(path), read_glue_file(path, task, labelled=False)
    except UserError as e:
        raise UserError(f"{flag}: {e}") from None


def load_data(args):
    """(task, {split: examples}, splits): train, the dev split(s) and a labelled test file if given."""
    saved_labels = teacher_labels(args.task_name, args.task_type, args.model_name_or_path)
    task = resolve_task(args, known_labels=saved_labels)
    if saved_labels and task.labels and list(task.labels) != list(saved_labels):
        raise UserError(f"--model_name_or_path: the teacher was fine-tuned with labels {', '.join(saved_labels)}; "
                        f"this data has {', '.join(task.labels)} (class indices would not match; "
                        f"pass the teacher's order with --label_list)")
    splits = ("train",) + tuple(task.dev_splits) + (("test",) if task.file("test") else ())
    data = load_glue(task, args.data_dir, splits)
    if "test" in data and any(e.label is None for e in data["test"]):
        raise UserError(f"--test_file {task.file('test')}: no label column '{task.label}' (the OFA script scores "
                        f"the test file; predict unlabelled text with predict.py)")
    return task, data, splits


def add_aug(train_feats, aug, aug_path, tokenizer, max_seq_length, data_info):
    """Distillation needs no labels: one unlabelled training set, so that every batch may mix the two."""
    if not aug:
        return train_feats
    data_info.update(augmented=len(aug), aug_file=aug_path)
    logger.info("augmented data: %d examples added to the %d training examples (%s)", len(aug),
                data_info["train"], aug_path)
    return [dict(f, label=None) for f in train_feats] + encode(aug, tokenizer, max_seq_length)


def main(argv=None):
    args = parse_args(argv)
    requested = ofa_run.setup(args)
    task, data, splits = load_data(args)
    aug_path, aug = read_aug(task, args.data_dir, args.data_aug, args.aug_file)
    kind = task.task_type
    teacher, tokenizer, config = load_model(args.model_name_or_path, kind, task.num_labels, require_head=True,
                                            task_name=task.name, expect_task_type=kind)
    widths = snap_widths(requested, config.num_attention_heads, config.intermediate_size)
    feats = {s: encode(data[s], tokenizer, args.max_seq_length) for s in splits}
    train_feats, imp_feats = split_importance(feats["train"], feats[task.dev_splits[0]], args.importance_split,
                                              args.importance_ratio, args.importance_max_examples, args.seed)
    data_info = {"train": len(train_feats), "importance": len(imp_feats)}
    train_feats = add_aug(train_feats, aug, aug_path, tokenizer, args.max_seq_length, data_info)
    collate_fn = Batcher.for_task(task, tokenizer.pad_token_id)
    ofa_task = ofa_run.OFATask(
        kind=kind, num_labels=task.num_labels, collate_fn=collate_fn, loss_fn=task_loss(task),
        evaluate=lambda forward, sets: evaluate_task(forward, sets, collate_fn, task, args.batch_size),
        dir_name=lambda w: f"width_{w.tag()}", metric_name=task.metric, suite_info=task.suite_info(),
        data_info=data_info)
    dev_sets = {s: feats[s] for s in task.dev_splits}
    table = ofa_run.run(args, ofa_task, teacher, tokenizer, config, widths, train_feats, imp_feats, dev_sets,
                        feats.get("test"))
    if table is not None and "test" in table:  # master only
        write_json_atomic(os.path.join(args.output_dir, "all_results.json"), table)
    runs.end_run(args.output_dir)


if __name__ == "__main__":
    run_main(main)
