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
"""
import utils  # noqa: F401  (first: stack fixes before paddle is imported)

import argparse
import logging
import os

from utils import distill, elastic, training
from utils.data import collate, encode, load_glue
from utils.errors import run_main
from utils.evaluation import evaluate_task
from utils.modeling import load_model
from utils.tasks import GLUE_TASKS, get_task

logger = logging.getLogger("bert_suite")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task_name", required=True, help="one of: " + ", ".join(GLUE_TASKS))
    p.add_argument("--data_dir", default=None, help="directory with the GLUE files; default: paddlenlp's hub copy")
    training.add_common_args(p, epochs=6.0, logging_steps=10, save_steps=100)
    distill.add_ofa_args(p)
    args = p.parse_args(argv)
    training.check_common_args(args)
    distill.check_ofa_args(args)
    return args


def main(argv=None):
    args = parse_args(argv)
    training.setup_logging()
    task = get_task(args.task_name)
    requested = distill.parse_widths(args)
    training.setup_device(args)
    training.set_seed(args.seed)

    splits = ("train",) + tuple(task.dev_splits)
    data = load_glue(task, args.data_dir, splits)
    kind = "regression" if task.is_regression else "classification"
    teacher, tokenizer, config = load_model(args.model_name_or_path, kind, task.num_labels, require_head=True,
                                            task_name=task.name)
    widths = elastic.snap_widths(requested, config.num_attention_heads, config.intermediate_size)
    feats = {s: encode(data[s], tokenizer, args.max_seq_length) for s in splits}
    train_feats, imp_feats = distill.split_importance(args, feats["train"], feats[task.dev_splits[0]])
    collate_fn = lambda b: collate(b, tokenizer.pad_token_id, task.is_regression)  # noqa: E731
    per_epoch, total_steps = training.num_steps(args, len(train_feats))

    import paddle.nn.functional as F

    def task_loss(logits, labels):
        if task.is_regression:
            return F.mse_loss(logits.reshape([-1]), labels.reshape([-1]).astype(logits.dtype))
        return F.cross_entropy(logits, labels.reshape([-1]))

    os.makedirs(args.output_dir, exist_ok=True)
    if training.is_master():
        training.write_json_atomic(os.path.join(args.output_dir, "args.json"), vars(args))
    for w in widths:
        logger.info("width %s (requested %s): %d of %d heads, FFN %d of %d", w.tag(), w.requested, w.heads,
                    config.num_attention_heads, w.ffn, config.intermediate_size)
    dev_sets = {s: feats[s] for s in task.dev_splits}
    ofa = distill.prepare_supernet(args, teacher, config, widths, imp_feats, dev_sets[task.dev_splits[0]][:64],
                           collate_fn, task_loss)

    def evaluate_fn(forward):
        return evaluate_task(forward, dev_sets, collate_fn, task, args.batch_size)

    dir_name = lambda w: f"width_{w.tag()}"  # noqa: E731
    info = {"task_type": kind, "task_name": task.name, "label_list": list(task.labels or [])}
    stage = distill.OFADistill(args, teacher, ofa, widths, tokenizer, config, kind, evaluate_fn, dir_name,
                               suite_info=info)
    optimizer, scheduler = training.build_optimizer(args, ofa.model, total_steps)
    training.train(args, stage, ofa.model, optimizer, scheduler, train_feats, collate_fn, total_steps, per_epoch)
    distill.finish(args, stage, config, dir_name, task.metric)


if __name__ == "__main__":
    run_main(main)
