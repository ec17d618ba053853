"""Once-for-all width-adaptive distillation: the training stage (the step,
per-width evaluation and checkpointing) and its final table, shared by the
GLUE and the NER scripts (they differ only in the task loss and the metric;
the script plumbing they share is :mod:`utils.ofa_run`).

Every step trains every width against the fine-tuned teacher:
``loss_w = lambda_rep * hidden-state MSE + lambda_logit * logit loss``, with
the teacher's embedding output and every encoder layer as mapping layers,
one backward per width (gradients accumulate) and one optimizer step per
batch.  The teacher's outputs do not depend on the width, so the teacher runs
once per batch (upstream runs it once per width: benchmarks/bench_ofa_step.py
times that recipe with a subclass of :class:`OFADistill`).
"""
import contextlib
import logging
import os

import numpy as np

from . import elastic_forward, extract, parallel, runs, supernet, training
from .losses import distill_loss
from .evaluation import format_results, to_tensors
from .modeling import save_model
from .widths import depth_layers, snap_widths

logger = logging.getLogger("bert_suite")


# --------------------------------------------------------------------------- the trainable wrapper
def elastic_layer(ofa):
    """A paddle Layer whose forward is the suite's elastic forward over the
    supernet, hidden states included (so paddle.DataParallel can wrap it)."""
    return elastic_forward.as_layer(ofa.model, output_hidden_states=True)


class SubNet:
    """One trained sub-network: a width and a depth (the encoder layers kept)."""

    def __init__(self, width, depth, layers):
        self.width, self.depth, self.layers = width, depth, layers   # layers None = all

    def tag(self):
        return self.width.tag() if self.layers is None else f"{self.width.tag()}_d{self.depth:.4f}"

    def dir_name(self, width_dir_name):
        base = width_dir_name(self.width)
        return base if self.layers is None else f"{base}_depth_{self.depth:.4f}"

    def describe(self):
        d = "" if self.layers is None else f", depth {self.depth:.4f} (layers {self.layers})"
        return f"width {self.width.tag()} ({self.width.heads} heads, FFN {self.width.ffn}){d}"


def subnets(widths, num_layers, depth_mults=("1.0",)):
    """Every width at every depth; depth 1.0 first."""
    depths, seen = [], set()
    for d in depth_mults:
        keep = depth_layers(num_layers, d)
        if len(keep) not in seen:
            seen.add(len(keep))
            depths.append((len(keep) / num_layers, None if len(keep) == num_layers else keep))
    depths.sort(key=lambda x: -x[0])
    return [SubNet(w, d, keep) for d, keep in depths for w in widths]


class OFADistill(training.Stage):
    """The OFA training stage.

    ``evaluate_fn(forward) -> (results, score)`` evaluates a forward function
    ``forward(input_ids, token_type_ids) -> logits`` on dev; ``dir_name(w)``
    names the directory of the best checkpoint of width ``w`` (sub-networks of
    a smaller depth get ``_depth_{d:.4f}`` appended).  Depth (DynaBERT's
    second stage) is distilled from the same fine-tuned teacher: the student's
    j-th kept layer learns the output of the teacher's layer of the same
    original index.
    """

    def __init__(self, output_dir, teacher, ofa, widths, tokenizer, config, kind, evaluate_fn, dir_name, *,
                 depth_mults=None, lambda_logit=1.0, lambda_rep=0.1, token_mask_fn=None, suite_info=None):
        import paddle
        self.output_dir, self.teacher, self.ofa, self.widths = output_dir, teacher, ofa, widths
        self.lambda_logit, self.lambda_rep = lambda_logit, lambda_rep
        self.tokenizer, self.config, self.kind = tokenizer, config, kind
        self.evaluate_fn, self.dir_name, self.token_mask_fn = evaluate_fn, dir_name, token_mask_fn
        self.suite_info = dict(suite_info or {})
        self.subnets = subnets(widths, config.num_hidden_layers, depth_mults or ["1.0"])
        self.net = elastic_layer(ofa)
        if parallel.rank_and_world()[1] > 1:
            self.net = paddle.DataParallel(self.net)
        self.best = {}            # sub-network tag -> {"step", "score", "results"}
        self.teacher_result = None
        self.last_losses = []
        self.data_info = {}       # examples trained on, for the table (set by the script)

    # ---------------------------------------------------------------- training
    def step(self, batch, step):
        import paddle
        ids, seg = to_tensors(batch[:2])      # labels are None for augmented (unlabelled) batches
        mask = self.token_mask_fn(ids, paddle.to_tensor(batch[2])) if self.token_mask_fn else None
        pad = self.tokenizer.pad_token_id if self.tokenizer is not None else getattr(self.config, "pad_token_id", 0)
        real = ids != pad      # the hidden states of real tokens are distilled
        teacher_out = self.run_teacher(ids, seg)
        self.last_losses = []
        for i, sub in enumerate(self.subnets):
            last = i == len(self.subnets) - 1
            self.last_losses.append(self.distil(sub, ids, seg, teacher_out, mask, real, last))
        supernet.set_width(self.ofa, None)
        return float(np.mean([l[0] for l in self.last_losses]))

    def run_teacher(self, ids, seg):
        """The teacher's (logits, hidden states), once per batch: they do not depend on the width."""
        import paddle
        self.teacher.eval()
        with paddle.no_grad():
            return elastic_forward.forward(self.teacher, ids, seg, output_hidden_states=True)

    def distil(self, sub, ids, seg, teacher_out, mask, real, last):
        """Forward and backward of sub-network ``sub`` against the teacher's
        outputs; returns its (loss, hidden-state loss, logit loss).  Gradients
        are synchronised after the ``last`` sub-network only."""
        t_logits, t_hidden = teacher_out
        if sub.layers is not None:
            t_hidden = [t_hidden[0]] + [t_hidden[k + 1] for k in sub.layers]
        supernet.set_width(self.ofa, sub.width, sub.layers)
        sync = contextlib.nullcontext() if last or not hasattr(self.net, "no_sync") else self.net.no_sync()
        with sync:
            s_logits, s_hidden = self.net(ids, seg)
            loss, rep, logit = distill_loss(s_logits, s_hidden, t_logits, t_hidden, self.kind,
                                            self.lambda_logit, self.lambda_rep, mask, rep_mask=real)
            loss.backward()
        return float(loss), float(rep), float(logit)

    # ---------------------------------------------------------------- evaluation
    def sub_forward(self, sub):
        def fwd(ids, seg):
            supernet.set_width(self.ofa, sub.width, sub.layers)
            return elastic_forward.forward(self.ofa.model, ids, seg)
        return fwd

    def evaluate(self, step, epoch):
        self.ofa.model.eval()
        if self.teacher_result is None:
            self.teacher.eval()
            res, score = self.evaluate_fn(lambda i, s: elastic_forward.forward(self.teacher, i, s))
            self.teacher_result = {"results": res, "score": score}
            logger.info("teacher: %s", format_results(res))
        record = {"step": step, "epoch": epoch, "teacher": self.teacher_result, "widths": {}}
        for sub in self.subnets:
            res, score = self.evaluate_fn(self.sub_forward(sub))
            tag = sub.tag()
            improved = tag not in self.best or score > self.best[tag]["score"]
            logger.info("eval step %d %s: %s%s", step, sub.describe(), format_results(res),
                        "  (best so far)" if improved else "")
            record["widths"][tag] = {"score": score, **res}
            if improved:
                self.best[tag] = {"step": step, "score": score, "results": res}
                self.save_sub(sub, step, score)
        supernet.set_width(self.ofa, None)
        runs.append_result(self.output_dir, record)

    def save_sub(self, sub, step, score, directory=None):
        """Save the supernet (full-size, reordered weights) as the checkpoint
        of sub-network ``sub``; export_model.py cuts the sub-network out of it."""
        full = extract.extract_subnet(self.ofa.model, self.full_width(), self.config, self.kind)
        info = dict(self.suite_info)
        depths = sorted({s.depth for s in self.subnets}, reverse=True)
        info["supernet"] = {
            "widths": [x.ratio for x in self.widths], "requested": [x.requested for x in self.widths],
            "depths": depths, "num_heads": self.config.num_attention_heads,
            "selected_width": sub.width.ratio if sub else None,
            "selected_depth": sub.depth if sub else None,
            "selected_layers": sub.layers if sub else None, "step": step, "score": score}
        info["run"] = runs.run_state(self.output_dir, step, self.total_steps)
        target = directory or os.path.join(self.output_dir, sub.dir_name(self.dir_name))
        save_model(full, self.tokenizer, target, info)

    def full_width(self):
        return snap_widths([1.0], self.config.num_attention_heads, self.config.intermediate_size)[0]

    def state(self):
        return {"best": self.best, "teacher_result": self.teacher_result}

    def load_state(self, state):
        self.best = state.get("best", {})
        self.teacher_result = state.get("teacher_result")


def summary_table(stage, config, dir_name):
    """Rows of the final table: width, depth, heads, FFN size, parameters,
    metric, difference from the teacher."""
    teacher_score = stage.teacher_result["score"] if stage.teacher_result else float("nan")
    rows = []
    for sub in stage.subnets:
        best = stage.best.get(sub.tag(), {})
        net = extract.extract_subnet(stage.ofa.model, sub.width, config, stage.kind, layers=sub.layers)
        rows.append({"width": sub.width.ratio, "requested": sub.width.requested, "depth": sub.depth,
                     "layers": sub.layers or list(range(config.num_hidden_layers)),
                     "heads": sub.width.heads, "ffn": sub.width.ffn,
                     "params": extract.param_count(net), "score": best.get("score"), "step": best.get("step"),
                     "diff_from_teacher": (best["score"] - teacher_score) if best else None,
                     "dir": sub.dir_name(dir_name), "results": best.get("results")})
    return {"teacher_score": teacher_score, "rows": rows, "training_data": dict(stage.data_info)}


def format_table(table, metric_name):
    lines = [f"{'width':>7} {'depth':>6} {'heads':>5} {'FFN':>6} {'params':>11} {metric_name:>10} {'vs teacher':>10}"
             f"  dir",
             f"{'teacher':>7} {'':>6} {'':>5} {'':>6} {'':>11} {table['teacher_score']:>10.4f} {'':>10}"]
    for r in table["rows"]:
        score = "-" if r["score"] is None else f"{r['score']:.4f}"
        diff = "-" if r["diff_from_teacher"] is None else f"{r['diff_from_teacher']:+.4f}"
        lines.append(f"{r['width']:>7.4f} {r.get('depth', 1.0):>6.3f} {r['heads']:>5d} {r['ffn']:>6d} "
                     f"{r['params']:>11,d} {score:>10} {diff:>10}  {r['dir']}")
    return "\n".join(lines)
