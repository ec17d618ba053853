"""Stage 1, fine-tuning the teacher: what run_glue.py and run_msra_ner.py share.

The two scripts differ only in the loss, the evaluation and what a saved
model records; they pass those in and read top to bottom themselves.
"""
import logging
import os

from . import parallel, runs, train_args, training
from .elastic_forward import as_layer, model_forward
from .evaluation import format_results, to_tensors
from .modeling import save_model

logger = logging.getLogger("bert_suite")


def setup(args):
    """Logging, device (--device/--n_gpu) and seed of a fine-tuning run."""
    parallel.setup_process(args.device, args.n_gpu, args.seed)


class FineTuneStage(training.Stage):
    """``loss(logits, labels)`` on every batch; at every evaluation
    ``score(forward, dev_sets, collate, batch_size=...) -> (results, score)``
    is appended to ``output_dir/results.json`` and the best model so far is
    saved to ``output_dir/best_dir`` with ``model_info`` (plus the step and
    the run) in its config."""

    def __init__(self, model, tokenizer, loss, score, model_info, dev_sets, collate, output_dir, batch_size,
                 best_dir="best"):
        self.model, self.tokenizer, self.loss, self.score = model, tokenizer, loss, score
        self.model_info, self.dev_sets, self.collate = dict(model_info), dev_sets, collate
        self.output_dir, self.batch_size, self.best_dir = output_dir, batch_size, best_dir
        self.best = None
        self.forward = model_forward(model)     # decided once: the suite's forward when it can run the model
        self.train_forward = self.forward       # fit() wraps it in DataParallel when there are several ranks

    def step(self, batch, step):
        ids, seg, labels = to_tensors(batch)
        loss = self.loss(self.train_forward(ids, token_type_ids=seg), labels)
        loss.backward()
        return loss

    def evaluate(self, step, epoch):
        self.model.eval()
        results, score = self.score(self.forward, self.dev_sets, self.collate,
                                    batch_size=self.batch_size)
        improved = self.best is None or score > self.best["score"]
        logger.info("eval step %d: %s%s", step, format_results(results), "  (best so far)" if improved else "")
        runs.append_result(self.output_dir, {"step": step, "epoch": epoch, "score": score, **results})
        if improved:
            self.best = {"step": step, "score": score, "results": results}
            save_model(self.model, self.tokenizer, os.path.join(self.output_dir, self.best_dir), self.info(step))
        return score

    def info(self, step):
        run = runs.run_state(self.output_dir, step, self.total_steps)
        return dict(self.model_info, trained_steps=step, run=run)

    def state(self):
        return {"best": self.best}

    def load_state(self, state):
        self.best = state.get("best")


def fit(args, stage, train_features, total_steps, per_epoch):
    """Lock ``--output_dir`` (everything that can fail on bad input must come
    before), build the optimizer, wrap the model for data parallelism when
    there are several ranks, and train.  Returns the trained model."""
    runs.start_run(args.output_dir, vars(args), args.resume, args.overwrite_output_dir)   # --overwrite_output_dir clears the old records
    model = stage.model
    optimizer, scheduler = training.build_optimizer(model, total_steps, **train_args.optimizer_settings(args))
    if parallel.rank_and_world()[1] > 1:   # DataParallel over the suite's forward; the stage keeps the model
        import paddle
        stage.train_forward = paddle.DataParallel(as_layer(model))
    training.train(stage, model, optimizer, scheduler, train_features, stage.collate, total_steps, per_epoch,
                   **train_args.loop_settings(args))
    return model
