"""One once-for-all distillation run, as run_glue_ofa.py and
run_msra_ner_ofa.py both do it; the scripts differ only in what
:class:`OFATask` holds (data, loss, metric, directory names).

A run, top to bottom (:func:`run`): claim --output_dir; convert a copy of
the teacher into a supernet over the widths; compute head and FFN-neuron
importance on held-out examples and reorder by it (skipped on resume: the
checkpoint holds the reordered weights); check that the reordered
full-width supernet still equals the teacher; distil every sub-network
(:class:`utils.distill.OFADistill`); save the final checkpoints, the table
and the report; score the test split once per sub-network.
"""
import logging
import os
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from . import checkpoint, elastic_forward, extract, importance, parallel, runs, supernet, train_args, training
from .distill import OFADistill, format_table, summary_table
from .errors import UserError
from .evaluation import format_results, to_tensors
from .modeling import load_model
from .publish import write_json_atomic
from .widths import parse_width

logger = logging.getLogger("bert_suite")
FIDELITY_TOL = 1e-4  # reordered full-width supernet vs teacher, max |logit difference|


# --------------------------------------------------------------------------- flags
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


def check_ofa_args(args):
    if not 0 < args.importance_ratio < 1:
        raise UserError(f"--importance_ratio must be in (0, 1), got {args.importance_ratio}")
    if args.lambda_logit < 0 or args.lambda_rep < 0 or args.lambda_logit + args.lambda_rep == 0:
        raise UserError("--lambda_logit and --lambda_rep must be >= 0 and not both 0")


def parse_widths(texts, flag="--width_mult_list"):
    """The requested widths as floats (snapped once the teacher's shape is known)."""
    try:
        return [parse_width(t) for t in texts]
    except ValueError as e:
        raise UserError(f"{flag}: {e}")


def setup(args):
    """Logging, the requested widths (bad ones refused before anything
    heavy), device and seed."""
    requested = parse_widths(args.width_mult_list)
    parallel.setup_process(args.device, args.n_gpu, args.seed)
    return requested


def log_widths(widths, config, dir_name):
    for w in widths:
        logger.info("width %s (requested %s): %d of %d heads, FFN %d of %d -> %s", w.tag(), w.requested, w.heads,
                    config.num_attention_heads, w.ffn, config.intermediate_size, dir_name(w))


# --------------------------------------------------------------------------- the task
@dataclass
class OFATask:
    """What differs between the OFA scripts."""
    kind: str                      # task type of the teacher's head
    num_labels: int
    collate_fn: Callable           # features -> batch arrays
    loss_fn: Callable              # (logits, labels) -> scalar, for importance
    evaluate: Callable             # (forward, {split: features}) -> (results, score)
    dir_name: Callable             # Width -> directory of its best checkpoint
    metric_name: str
    suite_info: dict
    token_mask_fn: Optional[Callable] = None
    data_info: dict = field(default_factory=dict)   # examples trained on, for the table


# --------------------------------------------------------------------------- supernet
def prepare_supernet(teacher, widths, importance_feats, check_feats, collate_fn, loss_fn, batch_size, output_dir,
                     resuming):
    """Supernet, importance, reorder and the fidelity check; returns the OFA
    object.  Importance is skipped when ``resuming`` (the checkpoint holds
    the reordered weights)."""
    ofa = supernet.build_supernet(teacher, widths)
    if resuming:
        return ofa
    # Every process computes the same importance on the same examples, in
    # batches of the GLOBAL batch size: summed |gradients| depend on the batch
    # size, and a launch must reorder as one process of the same global batch.
    bs = batch_size * parallel.rank_and_world()[1]
    batches = [to_tensors(collate_fn(importance_feats[i:i + bs])) for i in range(0, len(importance_feats), bs)]
    head_imp, neuron_imp = importance.compute_importance(ofa.model, batches, loss_fn)
    importance.reorder(ofa.model, head_imp, neuron_imp)
    if parallel.is_master():
        write_json_atomic(os.path.join(output_dir, "importance.json"), {
            "head_importance": np.asarray(head_imp).tolist(),
            "head_order": [np.argsort(-np.asarray(h), kind="stable").tolist() for h in head_imp],
            "examples": len(importance_feats)})
    check_fidelity(ofa, teacher, check_feats, collate_fn, batch_size)
    return ofa


def check_fidelity(ofa, teacher, check_feats, collate_fn, batch_size):
    """The reordered full-width supernet must still be the teacher."""
    import paddle
    teacher.eval()
    ofa.model.eval()
    supernet.set_width(ofa, None)
    worst = 0.0
    with paddle.no_grad():
        for i in range(0, len(check_feats), batch_size):
            ids, seg = to_tensors(collate_fn(check_feats[i:i + batch_size])[:2])
            diff = (elastic_forward.forward(ofa.model, ids, seg) - elastic_forward.forward(teacher, ids, seg)).abs()
            worst = max(worst, float(diff.max()))
    logger.info("reordered width-1.0 supernet vs teacher: max |logit difference| = %.3e", worst)
    if worst > FIDELITY_TOL:
        raise SystemExit(f"error: the reordered full-width supernet differs from the teacher by {worst:.3e} "
                         f"(> {FIDELITY_TOL}); refusing to train")


# --------------------------------------------------------------------------- after training
def save_final(stage, output_dir, dir_name):
    """Always a checkpoint of every sub-network (the last weights when it was
    never evaluated, which cannot happen unless interrupted) and ``final``;
    returns the directory names."""
    for sub in stage.subnets:
        if sub.tag() not in stage.best:
            stage.save_sub(sub, None, None, os.path.join(output_dir, sub.dir_name(dir_name)))
    stage.save_sub(None, None, None, os.path.join(output_dir, "final"))
    return [sub.dir_name(dir_name) for sub in stage.subnets] + ["final"]


def write_table(stage, config, dir_name, metric_name, output_dir, teacher_dir):
    """all_results.json, the printed table and the report; returns the table."""
    table = summary_table(stage, config, dir_name)
    write_json_atomic(os.path.join(output_dir, "all_results.json"), table)
    print(format_table(table, metric_name), flush=True)
    from .report import build_ofa_report
    paths = build_ofa_report(output_dir, teacher_dir=teacher_dir)
    logger.info("report (parameters, FLOPs, dev metric; add latencies with report.py --benchmark): %s, plot %s",
                paths["md"], paths["png"])
    return table


def evaluate_test(stage, task, feats, output_dir, teacher_result=None):
    """The labelled test split, once for the teacher and once per trained
    sub-network (its best checkpoint cut to its width and depth).
    ``teacher_result``: the teacher's test metrics recorded for these very
    windows by its own run (not scored again)."""
    test = {"test": feats}
    if teacher_result is None:
        stage.teacher.eval()
        res, _ = task.evaluate(lambda i, s: elastic_forward.forward(stage.teacher, i, s), test)
        teacher_result = res["test"]
        logger.info("teacher test: %s", format_results(res))
    else:
        logger.info("teacher test (recorded by its fine-tuning run for these weights and test windows): %s",
                    format_results({"test": teacher_result}))
    out = {"teacher": teacher_result, "widths": {}}
    for sub in stage.subnets:
        full, _, cfg = load_model(os.path.join(output_dir, sub.dir_name(task.dir_name)), task.kind,
                                  task.num_labels, expect_task_type=task.kind)
        net = extract.extract_subnet(full, sub.width, cfg, task.kind, layers=sub.layers)
        net.eval()
        res, _ = task.evaluate(elastic_forward.model_forward(net), test)
        out["widths"][sub.tag()] = res["test"]
        logger.info("%s test: %s", sub.describe(), format_results(res))
    return out


# --------------------------------------------------------------------------- the run
def run(args, task, teacher, tokenizer, config, widths, train_feats, imp_feats, dev_sets, test_feats=None,
        teacher_test=None):
    """Distil, then save and report (see the module docstring).  Returns the
    table (with ``test`` when ``test_feats`` is given; ``teacher_test``: the
    teacher's test metrics on them, recorded earlier) on the master process,
    None elsewhere; the caller writes all_results.json and ends the run."""
    per_epoch, total_steps = parallel.num_steps(**train_args.step_settings(args), n_train=len(train_feats))
    runs.start_run(args.output_dir, vars(args), args.resume, args.overwrite_output_dir)   # lock --output_dir; --overwrite_output_dir clears the old records
    log_widths(widths, config, task.dir_name)
    resuming = bool(args.resume) and checkpoint.has_checkpoint(args.output_dir)
    first_dev = dev_sets[next(iter(dev_sets))]
    ofa = prepare_supernet(teacher, widths, imp_feats, first_dev[:64], task.collate_fn, task.loss_fn,
                           args.batch_size, args.output_dir, resuming)
    stage = OFADistill(args.output_dir, teacher, ofa, widths, tokenizer, config, task.kind,
                       lambda forward: task.evaluate(forward, dev_sets), task.dir_name,
                       depth_mults=args.depth_mult_list, lambda_logit=args.lambda_logit,
                       lambda_rep=args.lambda_rep, token_mask_fn=task.token_mask_fn, suite_info=task.suite_info)
    stage.data_info = dict(task.data_info)
    optimizer, scheduler = training.build_optimizer(ofa.model, total_steps, **train_args.optimizer_settings(args))
    training.train(stage, ofa.model, optimizer, scheduler, train_feats, task.collate_fn, total_steps,
                   per_epoch, **train_args.loop_settings(args))
    if not parallel.is_master():
        return None
    dirs = save_final(stage, args.output_dir, task.dir_name)
    runs.finish_run(args.output_dir, dirs)
    teacher_dir = args.model_name_or_path if os.path.isdir(args.model_name_or_path) else None
    table = write_table(stage, config, task.dir_name, task.metric_name, args.output_dir, teacher_dir)
    if test_feats is not None:
        table["test"] = evaluate_test(stage, task, test_feats, args.output_dir, teacher_test)
        for row, sub in zip(table["rows"], stage.subnets):   # the table has a row per sub-network, in order
            row["test"] = table["test"]["widths"][sub.tag()]
    return table
