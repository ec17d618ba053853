"""Stage 1: fine-tune the teacher BERT on a GLUE task or on your own data.

    python run_glue.py --model_name_or_path bert-base-uncased --task_name SST-2 \
        --data_dir glue_data --output_dir out/SST-2 --batch_size 32 --learning_rate 2e-5

    python run_glue.py --model_name_or_path bert-base-uncased --train_file train.csv --dev_file dev.csv \
        --text_column review --label_column tags --task_type multilabel --output_dir out/tags

Own data: TSV or CSV files (by extension) with a header row; --task_type
classification | regression | multilabel (labels joined by --label_delimiter);
--label_list fixes the class order (default: the sorted labels of the train file).

Writes ``output_dir/best/`` (best dev score) and ``output_dir/last/`` in
PaddleNLP's save_pretrained layout, ``results.json`` (every evaluation),
``all_results.json`` (the final summary) and resumable checkpoints; with
--test_file also ``test_predictions.tsv`` (and the test scores if it has labels).
"""
import utils  # noqa: F401  (first: stack fixes before paddle is imported)

import argparse
import json
import logging
import os
from functools import partial

from utils.errors import run_main
from utils import parallel, runs, train_args
from utils.data import Batcher, encode, load_glue, resolve_task
from utils.elastic_forward import model_forward
from utils.evaluation import evaluate_task, format_results, predict, write_predictions
from utils.finetune import FineTuneStage, fit, setup
from utils.losses import task_loss
from utils.metrics import compute_metrics
from utils.modeling import load_model, save_model
from utils.publish import write_json_atomic
from utils.tasks import add_task_args, check_task_args

logger = logging.getLogger("bert_suite")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_task_args(p)
    train_args.add_common_args(p)
    args = p.parse_args(argv)
    check_task_args(args)
    args.max_seq_length = train_args.check_common_args(args)
    return args


def main(argv=None):
    args = parse_args(argv)
    setup(args)

    # Everything that can fail on bad input happens before output_dir is touched.
    task = resolve_task(args)
    splits = ("train",) + tuple(task.dev_splits) + (("test",) if task.file("test") else ())
    data = load_glue(task, args.data_dir, splits)
    model, tokenizer, _ = load_model(args.model_name_or_path, task.task_type, task.num_labels)
    feats = {s: encode(data[s], tokenizer, args.max_seq_length) for s in splits}
    collate_fn = Batcher.for_task(task, tokenizer.pad_token_id)
    per_epoch, total_steps = parallel.num_steps(**train_args.step_settings(args), n_train=len(feats["train"]))

    # Cross-entropy (MSE for regression, binary cross-entropy for multilabel); keeps the best model.
    stage = FineTuneStage(model, tokenizer, task_loss(task), partial(evaluate_task, task=task), task.suite_info(),
                          {s: feats[s] for s in task.dev_splits}, collate_fn, args.output_dir, args.batch_size)
    model = fit(args, stage, feats["train"], total_steps, per_epoch)

    if parallel.is_master():
        save_model(model, tokenizer, os.path.join(args.output_dir, "last"), stage.info(total_steps))
        runs.finish_run(args.output_dir, ["best", "last"])
        summary = {"task": task.name, "best_step": stage.best["step"], "best_score": stage.best["score"],
                   "best": stage.best["results"], "train_examples": len(feats["train"]), "steps": total_steps}
        if task.is_own_data:
            summary.update(task_type=task.task_type, label_list=list(task.labels or []))
        if "test" in feats:
            summary["test"] = run_test(args.output_dir, task, data["test"], feats["test"], collate_fn,
                                       args.batch_size)
        write_json_atomic(os.path.join(args.output_dir, "all_results.json"), summary)
        logger.info("best dev %s at step %d: %s", task.metric, stage.best["step"],
                    format_results(stage.best["results"]))
        print(json.dumps(summary))
    runs.end_run(args.output_dir)


def run_test(output_dir, task, examples, feats, collate_fn, batch_size):
    """The best model on --test_file, once: predictions to
    test_predictions.tsv; the scores if the file has labels (else None)."""
    best, _, _ = load_model(os.path.join(output_dir, "best"), task.task_type, task.num_labels)
    best.eval()
    logits, labels = predict(model_forward(best), feats, collate_fn, batch_size)
    path = write_predictions(os.path.join(output_dir, "test_predictions.tsv"), examples, logits, task)
    logger.info("test predictions of the best model: %s", path)
    if labels is None:
        return None
    result = compute_metrics(task.metric, logits, labels)
    logger.info("test (best model): %s", format_results({"test": result}))
    return result


if __name__ == "__main__":
    run_main(main)
