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

from utils import distill, elastic, parallel, publish, runs, train_args, training
from utils.data import Batcher, encode, find_split_file, load_glue, read_glue_file, resolve_task
from utils.errors import UserError, run_main
from utils.evaluation import evaluate_task, format_results
from utils.losses import task_loss
from utils.modeling import load_config, load_model, suite_info
from utils.tasks import OWN_DATA, add_task_args, check_task_args

logger = logging.getLogger("bert_suite")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_task_args(p, test_file_help="optional: a labelled test file, scored once at the end for the teacher "
                                    "and the best checkpoint of every width")
    train_args.add_common_args(p, epochs=6.0, logging_steps=10, save_steps=100)
    distill.add_ofa_args(p)
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
    distill.check_ofa_args(args)
    return args


def teacher_labels(args):
    """Own data: the label list of a teacher fine-tuned on own data of the
    same task type (the default label list), else None."""
    if args.task_name or not os.path.isdir(args.model_name_or_path):
        return None
    info = suite_info(load_config(args.model_name_or_path))
    if info.get("task_name") != OWN_DATA or info.get("task_type") != args.task_type:
        return None
    return info.get("label_list") or None


def read_aug(args, task):
    """(path, unlabelled examples) of --data_aug / --aug_file, or (None, [])."""
    if not (args.data_aug or args.aug_file):
        return None, []
    flag = "--data_aug" if args.data_aug else "--aug_file"
    try:
        path = find_split_file(task, args.data_dir, "train_aug") if args.data_aug else args.aug_file
        return os.path.abspath(path), read_glue_file(path, task, labelled=False)
    except UserError as e:
        raise UserError(f"{flag}: {e}") from None


def evaluate_test(args, stage, task, feats, collate_fn, dir_name):
    """The labelled test file, once for the teacher and once per trained
    sub-network (its best checkpoint cut to its width and depth)."""
    test = {"test": feats}
    stage.teacher.eval()
    res, _ = evaluate_task(lambda i, s: elastic.forward(stage.teacher, i, s), test, collate_fn, task,
                           args.batch_size)
    out = {"teacher": res["test"], "widths": {}}
    logger.info("teacher test: %s", format_results(res))
    for sub in stage.subnets:
        full, _, cfg = load_model(os.path.join(args.output_dir, sub.dir_name(dir_name)), task.task_type,
                                  task.num_labels)
        net = elastic.extract_subnet(full, sub.width, cfg, task.task_type, layers=sub.layers)
        net.eval()
        res, _ = evaluate_task(lambda i, s: net(i, token_type_ids=s), test, collate_fn, task, args.batch_size)
        out["widths"][sub.tag()] = res["test"]
        logger.info("%s test: %s", sub.describe(), format_results(res))
    return out


def main(argv=None):
    args = parse_args(argv)
    requested = distill.parse_widths(args)
    parallel.setup_process(args.device, args.n_gpu, args.seed)

    saved_labels = teacher_labels(args)
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
    aug_path, aug = read_aug(args, task)
    kind = task.task_type
    teacher, tokenizer, config = load_model(args.model_name_or_path, kind, task.num_labels, require_head=True,
                                            task_name=task.name, expect_task_type=kind)
    widths = elastic.snap_widths(requested, config.num_attention_heads, config.intermediate_size)
    feats = {s: encode(data[s], tokenizer, args.max_seq_length) for s in splits}
    train_feats, imp_feats = distill.split_importance(args, feats["train"], feats[task.dev_splits[0]])
    data_info = {"train": len(train_feats), "importance": len(imp_feats)}
    if aug:
        # distillation needs no labels: one unlabelled training set, so that
        # every batch may mix the two
        train_feats = [dict(f, label=None) for f in train_feats] + encode(aug, tokenizer, args.max_seq_length)
        data_info.update(augmented=len(aug), aug_file=aug_path)
        logger.info("augmented data: %d examples added to the %d training examples (%s)", len(aug),
                    data_info["train"], aug_path)
    collate_fn = Batcher.for_task(task, tokenizer.pad_token_id)
    per_epoch, total_steps = parallel.num_steps(**train_args.step_settings(args), n_train=len(train_feats))

    runs.start_run(args.output_dir, vars(args), args.resume, args.overwrite_output_dir)   # lock; clear old records
    for w in widths:
        logger.info("width %s (requested %s): %d of %d heads, FFN %d of %d", w.tag(), w.requested, w.heads,
                    config.num_attention_heads, w.ffn, config.intermediate_size)
    dev_sets = {s: feats[s] for s in task.dev_splits}
    ofa = distill.prepare_supernet(args, teacher, config, widths, imp_feats, dev_sets[task.dev_splits[0]][:64],
                                   collate_fn, task_loss(task))

    def evaluate_fn(forward):
        return evaluate_task(forward, dev_sets, collate_fn, task, args.batch_size)

    dir_name = lambda w: f"width_{w.tag()}"  # noqa: E731
    info = task.suite_info()
    stage = distill.OFADistill(args, teacher, ofa, widths, tokenizer, config, kind, evaluate_fn, dir_name,
                               suite_info=info)
    stage.data_info = data_info
    optimizer, scheduler = training.build_optimizer(ofa.model, total_steps, **train_args.optimizer_settings(args))
    training.train(stage, ofa.model, optimizer, scheduler, train_feats, collate_fn, total_steps, per_epoch,
                   **train_args.loop_settings(args))
    table = distill.finish(args, stage, config, dir_name, task.metric)
    if table is not None and "test" in feats:  # master only
        table["test"] = evaluate_test(args, stage, task, feats["test"], collate_fn, dir_name)
        for row, sub in zip(table["rows"], stage.subnets):   # the table has a row per sub-network, in order
            row["test"] = table["test"]["widths"][sub.tag()]
        publish.write_json_atomic(os.path.join(args.output_dir, "all_results.json"), table)
    runs.end_run(args.output_dir)


if __name__ == "__main__":
    run_main(main)
