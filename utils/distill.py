"""Once-for-all width-adaptive distillation: the loss, the training step and
per-width evaluation/checkpointing, shared by the GLUE and the NER scripts
(they differ only in the task loss and the metric).

Every step trains every width against the fine-tuned teacher:
``loss_w = lambda_rep * hidden-state MSE + lambda_logit * logit loss``, with
the teacher's embedding output and every encoder layer as mapping layers,
one backward per width (gradients accumulate) and one optimizer step per
batch.  The teacher's outputs do not depend on the width, so the teacher runs
once per batch (upstream runs it once per width: ``teacher_per_width=True``
reproduces that recipe for the benchmark).
"""
import contextlib
import logging
import os

import numpy as np

from . import checkpoint, elastic, parallel, publish, runs, training
from .losses import distill_loss
from .errors import UserError
from .evaluation import format_results, to_tensors
from .modeling import save_model

logger = logging.getLogger("bert_suite")
FIDELITY_TOL = 1e-4  # reordered full-width supernet vs teacher, max |logit difference|


# --------------------------------------------------------------------------- the trainable wrapper
def elastic_layer(ofa):
    """A paddle Layer whose forward is the suite's elastic forward over the
    supernet (so paddle.DataParallel can wrap it)."""
    import paddle

    class ElasticNet(paddle.nn.Layer):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, input_ids, token_type_ids=None):
            return elastic.forward(self.net, input_ids, token_type_ids, output_hidden_states=True)

    return ElasticNet(ofa.model)


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
    from .elastic import depth_layers
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

    def __init__(self, args, teacher, ofa, widths, tokenizer, config, kind, evaluate_fn, dir_name,
                 token_mask_fn=None, suite_info=None):
        import paddle
        self.args, self.teacher, self.ofa, self.widths = args, teacher, ofa, widths
        self.tokenizer, self.config, self.kind = tokenizer, config, kind
        self.evaluate_fn, self.dir_name, self.token_mask_fn = evaluate_fn, dir_name, token_mask_fn
        self.suite_info = dict(suite_info or {})
        self.subnets = subnets(widths, config.num_hidden_layers, getattr(args, "depth_mult_list", None) or ["1.0"])
        self.net = elastic_layer(ofa)
        if parallel.rank_and_world()[1] > 1:
            self.net = paddle.DataParallel(self.net)
        self.best = {}            # sub-network tag -> {"step", "score", "results"}
        self.teacher_result = None
        self.teacher_per_width = False
        self.last_losses = []
        self.data_info = {}       # examples trained on, for the table (set by the script)

    # ---------------------------------------------------------------- training
    def step(self, batch, step):
        import paddle
        ids, seg = to_tensors(batch[:2])      # labels are None for augmented (unlabelled) batches
        mask = self.token_mask_fn(ids, paddle.to_tensor(batch[2])) if self.token_mask_fn else None
        pad = self.tokenizer.pad_token_id if self.tokenizer is not None else getattr(self.config, "pad_token_id", 0)
        real = ids != pad      # the hidden states of real tokens are distilled
        self.teacher.eval()
        teacher_out = None
        if not self.teacher_per_width:
            with paddle.no_grad():
                teacher_out = elastic.forward(self.teacher, ids, seg, output_hidden_states=True)
        self.last_losses = []
        for i, sub in enumerate(self.subnets):
            if self.teacher_per_width:
                with paddle.no_grad():
                    teacher_out = elastic.forward(self.teacher, ids, seg, output_hidden_states=True)
            t_logits, t_hidden = teacher_out
            if sub.layers is not None:
                t_hidden = [t_hidden[0]] + [t_hidden[k + 1] for k in sub.layers]
            elastic.set_width(self.ofa, sub.width, sub.layers)
            last = i == len(self.subnets) - 1
            sync = contextlib.nullcontext() if last or not hasattr(self.net, "no_sync") else self.net.no_sync()
            with sync:
                s_logits, s_hidden = self.net(ids, seg)
                loss, rep, logit = distill_loss(s_logits, s_hidden, t_logits, t_hidden, self.kind,
                                                self.args.lambda_logit, self.args.lambda_rep, mask, rep_mask=real)
                loss.backward()
            self.last_losses.append((float(loss), float(rep), float(logit)))
        elastic.set_width(self.ofa, None)
        return float(np.mean([l[0] for l in self.last_losses]))

    # ---------------------------------------------------------------- evaluation
    def sub_forward(self, sub):
        def fwd(ids, seg):
            elastic.set_width(self.ofa, sub.width, sub.layers)
            return elastic.forward(self.ofa.model, ids, seg)
        return fwd

    def evaluate(self, step, epoch):
        self.ofa.model.eval()
        if self.teacher_result is None:
            self.teacher.eval()
            res, score = self.evaluate_fn(lambda i, s: elastic.forward(self.teacher, i, s))
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
        elastic.set_width(self.ofa, None)
        runs.append_result(self.args.output_dir, record)

    def save_sub(self, sub, step, score, directory=None):
        """Save the supernet (full-size, reordered weights) as the checkpoint
        of sub-network ``sub``; export_model.py cuts the sub-network out of it."""
        full = elastic.extract_subnet(self.ofa.model, self.full_width(), self.config, self.kind)
        info = dict(self.suite_info)
        depths = sorted({s.depth for s in self.subnets}, reverse=True)
        info["supernet"] = {
            "widths": [x.ratio for x in self.widths], "requested": [x.requested for x in self.widths],
            "depths": depths, "num_heads": self.config.num_attention_heads,
            "selected_width": sub.width.ratio if sub else None,
            "selected_depth": sub.depth if sub else None,
            "selected_layers": sub.layers if sub else None, "step": step, "score": score}
        info["run"] = runs.run_state(self.args.output_dir, step, self.total_steps)
        target = directory or os.path.join(self.args.output_dir, sub.dir_name(self.dir_name))
        save_model(full, self.tokenizer, target, info)

    def full_width(self):
        return elastic.snap_widths([1.0], self.config.num_attention_heads, self.config.intermediate_size)[0]

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
        net = elastic.extract_subnet(stage.ofa.model, sub.width, config, stage.kind, layers=sub.layers)
        rows.append({"width": sub.width.ratio, "requested": sub.width.requested, "depth": sub.depth,
                     "layers": sub.layers or list(range(config.num_hidden_layers)),
                     "heads": sub.width.heads, "ffn": sub.width.ffn,
                     "params": elastic.param_count(net), "score": best.get("score"), "step": best.get("step"),
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


# --------------------------------------------------------------------------- script plumbing shared by the OFA scripts
def add_ofa_args(p):
    """Flags shared by the OFA scripts (GLUE and NER)."""
    p.add_argument("--width_mult_list", nargs="+", default=["1.0", "0.75", "0.5"],
                   help="widths to train, as decimals or fractions (5/6 2/3 1/2); snapped to whole heads")
    p.add_argument("--depth_mult_list", nargs="+", default=["1.0"],
                   help="depths to train with every width (DynaBERT: layer floor(i/d) kept for i < round(d*L)); "
                        "the depth sub-networks learn from the same fine-tuned teacher")
    p.add_argument("--lambda_logit", type=float, default=1.0, help="weight of the logit distillation loss")
    p.add_argument("--lambda_rep", type=float, default=0.1, help="weight of the hidden-state MSE loss")
    p.add_argument("--importance_split", choices=["train", "dev"], default="train",
                   help="data for head/neuron importance: a seeded slice of train held out from training "
                        "(default), or dev (model selection then sees it)")
    p.add_argument("--importance_ratio", type=float, default=0.1,
                   help="share of train held out for importance when --importance_split=train")
    p.add_argument("--importance_max_examples", type=int, default=2000,
                   help="at most this many examples for importance")


def parse_widths(args):
    try:
        return [elastic.parse_width(t) for t in args.width_mult_list]
    except ValueError as e:
        raise UserError(f"--width_mult_list: {e}")


def check_ofa_args(args):
    if not 0 < args.importance_ratio < 1:
        raise UserError(f"--importance_ratio must be in (0, 1), got {args.importance_ratio}")
    if args.lambda_logit < 0 or args.lambda_rep < 0 or args.lambda_logit + args.lambda_rep == 0:
        raise UserError("--lambda_logit and --lambda_rep must be >= 0 and not both 0")


def split_importance(args, train, dev, flag_split="--importance_split"):
    """(training examples, importance examples)."""
    if args.importance_split == "dev":
        logger.warning("%s dev: importance is computed on the dev set, which also selects the best models",
                       flag_split)
        return train, dev[: args.importance_max_examples]
    order = np.random.RandomState(args.seed).permutation(len(train))
    n = min(max(1, int(round(args.importance_ratio * len(train)))), args.importance_max_examples)
    held = set(order[:n].tolist())
    logger.info("importance: %d training examples held out from training (--importance_ratio %.2f)", n,
                args.importance_ratio)
    return [t for i, t in enumerate(train) if i not in held], [train[i] for i in sorted(held)]


def prepare_supernet(args, teacher, config, widths, importance_feats, check_feats, collate_fn, loss_fn):
    """Supernet, importance, reorder and the fidelity check; returns the OFA
    object.  Importance is skipped when resuming (the checkpoint holds the
    reordered weights)."""
    import paddle
    ofa = elastic.build_supernet(teacher, widths)
    if args.resume and checkpoint.has_checkpoint(args.output_dir):
        return ofa
    # Every process computes the same importance on the same examples, in
    # batches of the GLOBAL batch size: summed |gradients| depend on the batch
    # size, and a launch must reorder as one process of the same global batch.
    bs = args.batch_size * parallel.rank_and_world()[1]
    batches = [to_tensors(collate_fn(importance_feats[i:i + bs])) for i in range(0, len(importance_feats), bs)]
    head_imp, neuron_imp = elastic.compute_importance(ofa.model, batches, loss_fn)
    elastic.reorder(ofa.model, head_imp, neuron_imp)
    if parallel.is_master():
        publish.write_json_atomic(os.path.join(args.output_dir, "importance.json"), {
            "head_importance": np.asarray(head_imp).tolist(),
            "head_order": [np.argsort(-np.asarray(h), kind="stable").tolist() for h in head_imp],
            "examples": len(importance_feats)})
    # The reordered full-width supernet must still be the teacher.
    teacher.eval()
    ofa.model.eval()
    elastic.set_width(ofa, None)
    worst = 0.0
    with paddle.no_grad():
        for i in range(0, len(check_feats), args.batch_size):
            ids, seg = to_tensors(collate_fn(check_feats[i:i + args.batch_size])[:2])
            diff = (elastic.forward(ofa.model, ids, seg) - elastic.forward(teacher, ids, seg)).abs().max()
            worst = max(worst, float(diff))
    logger.info("reordered width-1.0 supernet vs teacher: max |logit difference| = %.3e", worst)
    if worst > FIDELITY_TOL:
        raise SystemExit(f"error: the reordered full-width supernet differs from the teacher by {worst:.3e} "
                         f"(> {FIDELITY_TOL}); refusing to train")
    return ofa


def finish(args, stage, config, dir_name, metric_name):
    """Always write a final checkpoint of every width, then the table."""
    if not parallel.is_master():
        return None
    for sub in stage.subnets:
        if sub.tag() not in stage.best:  # never evaluated (cannot happen unless interrupted): keep the last
            stage.save_sub(sub, None, None, os.path.join(args.output_dir, sub.dir_name(dir_name)))
    stage.save_sub(None, None, None, os.path.join(args.output_dir, "final"))
    runs.finish_run(args.output_dir, [sub.dir_name(dir_name) for sub in stage.subnets] + ["final"])
    table = summary_table(stage, config, dir_name)
    publish.write_json_atomic(os.path.join(args.output_dir, "all_results.json"), table)
    print(format_table(table, metric_name), flush=True)
    from .report import build_ofa_report
    teacher_dir = args.model_name_or_path if os.path.isdir(args.model_name_or_path) else None
    paths = build_ofa_report(args.output_dir, teacher_dir=teacher_dir)
    logger.info("report (parameters, FLOPs, dev metric; add latencies with report.py --benchmark): %s, plot %s",
                paths["md"], paths["png"])
    return table


