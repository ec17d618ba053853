"""Stage 2 for NER: once-for-all width-adaptive distillation of a fine-tuned
token-classification teacher (PaddleSlim OFA + DynaBERT head/neuron
importance reordering).

    python run_msra_ner_ofa.py --model_name_or_path out/msra_ner/model_best --data_dir data/msra \
        --output_dir out/msra_ner_ofa --width_mult_list 1.0 0.75 0.5 --batch_size 32 --learning_rate 2e-5

Same recipe as run_glue_ofa.py: load the teacher; convert a copy into a
supernet over the widths (snapped to whole heads); compute head and
FFN-neuron importance on held-out training data and reorder by it; check that
the reordered full-width supernet still equals the teacher; distil every
width against the teacher (which runs once per batch) with the soft
cross-entropy and hidden-state MSE taken over real tokens only.

Selection uses DEV only: the best checkpoint of each width goes to
``output_dir/model_{width}`` (upstream names, e.g. ``model_0.5``; full-size
reordered weights, cut a width out with export_model.py) and a last one to
``output_dir/final``.  At the end the TEST split is evaluated once per width
(its best checkpoint, cut to that width) and reported separately.
Evaluations go to ``results.json``, the per-width table to ``all_results.json``.
The labels are the teacher's (its classifier order).
"""
import utils  # noqa: F401  (first: stack fixes before paddle is imported)

import argparse
import logging
import os

from utils import distill, elastic, ner, parallel, publish, runs, train_args, training
from utils.errors import run_main
from utils.evaluation import format_results
from utils.losses import token_loss, token_mask
from utils.modeling import load_model

logger = logging.getLogger("bert_suite")
KIND = "token_classification"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ner.add_ner_args(p)
    train_args.add_common_args(p, epochs=6.0, logging_steps=10, save_steps=100)
    distill.add_ofa_args(p)
    args = p.parse_args(argv)
    args.max_seq_length = train_args.check_common_args(args)
    ner.check_ner_args(args)
    distill.check_ofa_args(args)
    return args


def dir_name(w):
    """Upstream's ``model_{width}`` (``model_1.0``, ``model_0.5``; 5/6 -> ``model_0.8333``)."""
    return f"model_{round(w.requested, 4)}"


def evaluate_test(args, stage, feats, collate_fn, label_list):
    """The test split, once per width (its best checkpoint cut to the width)
    and once for the teacher."""
    test = {"test": feats}
    stage.teacher.eval()
    res, _ = ner.evaluate_ner(lambda i, s: elastic.forward(stage.teacher, i, s), test, collate_fn, label_list,
                              args.batch_size)
    out = {"teacher": res["test"], "widths": {}}
    for sn in stage.subnets:
        full, _, cfg = load_model(os.path.join(args.output_dir, sn.dir_name(dir_name)), KIND, len(label_list),
                                  expect_task_type=KIND)
        sub = elastic.extract_subnet(full, sn.width, cfg, KIND, layers=sn.layers)
        sub.eval()
        res, _ = ner.evaluate_ner(lambda i, s: sub(i, token_type_ids=s), test, collate_fn, label_list,
                                  args.batch_size)
        out["widths"][sn.tag()] = res["test"]
    return out


def format_test_table(test, subnets):
    lines = [f"{'test':>13} {'precision':>10} {'recall':>10} {'f1':>10}  dir"]
    rows = [("teacher", test["teacher"], "")] + [(sn.tag(), test["widths"][sn.tag()], sn.dir_name(dir_name))
                                                 for sn in subnets]
    for name, m, d in rows:
        lines.append(f"{name:>13} {m['precision']:>10.4f} {m['recall']:>10.4f} {m['f1']:>10.4f}  {d}")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    requested = distill.parse_widths(args)
    parallel.setup_process(args.device, args.n_gpu, args.seed)

    label_list = ner.resolve_label_list(args.label_list, args.model_name_or_path)
    data = ner.load_ner(args.data_dir, args.dev_ratio, args.seed, label_list)
    if label_list is None:
        logger.warning("%s records no label list: the labels are taken from the data (%s); they must be in the "
                       "order of the teacher's classifier (else pass --label_list)", args.model_name_or_path,
                       " ".join(data.label_list))
    label_list = data.label_list
    teacher, tokenizer, config = load_model(args.model_name_or_path, KIND, len(label_list), require_head=True,
                                            task_name=ner.TASK_NAME, expect_task_type=KIND)
    widths = elastic.snap_widths(requested, config.num_attention_heads, config.intermediate_size)
    feats = {s: ner.encode_ner(exs, tokenizer, args.max_seq_length, label_list, args.split_long, s)
             for s, exs in data.splits.items()}
    train_feats, imp_feats = distill.split_importance(args, feats["train"], feats["dev"])
    collate_fn = ner.NerBatcher(tokenizer.pad_token_id)
    per_epoch, total_steps = parallel.num_steps(**train_args.step_settings(args), n_train=len(train_feats))

    runs.start_run(args.output_dir, vars(args), args.resume, args.overwrite_output_dir)   # lock; clear old records
    for w in widths:
        logger.info("width %s (requested %s): %d of %d heads, FFN %d of %d -> %s", w.tag(), w.requested, w.heads,
                    config.num_attention_heads, w.ffn, config.intermediate_size, dir_name(w))
    dev_sets = {"dev": feats["dev"]}
    ofa = distill.prepare_supernet(args, teacher, config, widths, imp_feats, feats["dev"][:64], collate_fn,
                                   token_loss)

    def evaluate_fn(forward):
        return ner.evaluate_ner(forward, dev_sets, collate_fn, label_list, args.batch_size)

    info = {"task_type": KIND, "task_name": ner.TASK_NAME, "label_list": list(label_list),
            "max_seq_length": args.max_seq_length}
    stage = distill.OFADistill(args, teacher, ofa, widths, tokenizer, config, KIND, evaluate_fn, dir_name,
                               token_mask_fn=token_mask, suite_info=info)
    optimizer, scheduler = training.build_optimizer(ofa.model, total_steps, **train_args.optimizer_settings(args))
    training.train(stage, ofa.model, optimizer, scheduler, train_feats, collate_fn, total_steps, per_epoch,
                   **train_args.loop_settings(args))
    table = distill.finish(args, stage, config, dir_name, "f1")
    if table is None:  # not the master process
        return
    if "test" in feats:
        test = evaluate_test(args, stage, feats["test"], collate_fn, label_list)
        table["test"] = test
        for row, sn in zip(table["rows"], stage.subnets):
            row["test"] = test["widths"][sn.tag()]
        logger.info("teacher test: %s", format_results({"test": test["teacher"]}))
        print(format_test_table(test, stage.subnets), flush=True)
    else:
        table["test"] = None
    table["label_list"] = list(label_list)
    publish.write_json_atomic(os.path.join(args.output_dir, "all_results.json"), table)
    runs.end_run(args.output_dir)


if __name__ == "__main__":
    run_main(main)
