"""One-shot pruning of a fine-tuned BERT (TextPruner's workflow): attention
heads and FFN neurons by importance, and/or the vocabulary by a text corpus.

    # structured: 6 heads and FFN 768 in every layer, importance on 10% of train
    python prune.py --model_name_or_path out/SST-2/best --task_name SST-2 --data_dir glue_data \\
        --output_dir out/SST-2-pruned --target_num_of_heads 6 --target_ffn_size 768

    # vocabulary only (any model directory): keep the tokens of these texts
    python prune.py --model_name_or_path out/SST-2/best --output_dir out/SST-2-vocab \\
        --prune_vocab --vocab_texts reviews.txt --min_count 1

    # report parameters per component, files and memory of model directories
    python prune.py --analyze out/SST-2/best out/SST-2-pruned

The pruned model directory is written with the suite's save_model (config.json
records the per-layer shapes), reloads strictly with load_model, and is
accepted by run_glue.py (re-fine-tune).  Before anything is moved into
--output_dir the script checks numerically that (a) the cut model equals the
original with the pruned units masked out, (b) vocabulary pruning left the
outputs on text of kept tokens unchanged, (c) the reloaded directory equals
the model in memory; --static_model also writes a Paddle static model (for
predict.py / benchmark.py) checked against the dynamic one.
``output_dir/prune_info.json`` holds shapes before/after, the kept head and
neuron indices, parameters per component, FLOPs, file sizes and the checks.
See utils/pruning.py for exactly what is scored and how units are chosen,
utils/vocab_prune.py for the vocabulary and utils/model_report.py for the report.
"""
import utils  # noqa: F401  (first: stack fixes before paddle is imported)

import argparse
import json
import logging
import os

import numpy as np

from utils import analysis, inference, model_report, parallel, pruning, train_args, vocab_prune
from utils import output_dir as outdirs
from utils.errors import UserError, run_main
from utils.prune_checks import check_reload, encode_batches, encoder_out, logits_of, max_diff, require
from utils.modeling import (SUITE_KEY, WEIGHT_FILES, find_file, load_model, read_state_dict, save_model,
                            suite_info, write_state_dict)
from utils.publish import publish_dir, publish_prefix, staging_dir, write_json_atomic
from utils.tasks import GLUE_TASKS

logger = logging.getLogger("bert_suite")


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad invocation as a UserError (one ``error:`` line, exit 2)."""

    def error(self, message):
        raise UserError(message)


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_name_or_path", help="the fine-tuned model directory to prune")
    p.add_argument("--output_dir", help="the pruned model directory (replaced if it exists)")
    g = p.add_argument_group("structured pruning")
    g.add_argument("--task_name", help="GLUE task of the importance data: " + ", ".join(GLUE_TASKS))
    g.add_argument("--data_dir", help="directory with the task's files (DIR/TASK/train.tsv, dev.tsv)")
    g.add_argument("--importance_split", choices=["train", "dev"], default="train",
                   help="importance data: a seeded --importance_ratio slice of train (default) or dev")
    g.add_argument("--importance_ratio", type=float, default=0.1)
    g.add_argument("--importance_max_examples", type=int, default=2000)
    g.add_argument("--target_num_of_heads", type=int, default=None,
                   help="heads per layer (global mode: per layer on average); default: heads not pruned")
    g.add_argument("--target_ffn_size", type=int, default=None,
                   help="FFN neurons per layer (global mode: on average); default: FFN not pruned")
    g.add_argument("--pruning_mode", choices=pruning.MODES, default="even",
                   help="even: every layer keeps the targets; global: rank across layers (>= 1 per layer)")
    g.add_argument("--n_iters", type=int, default=1, help="prune in this many rounds, importance recomputed")
    g.add_argument("--head_score", choices=pruning.HEAD_SCORES, default="grad",
                   help="grad: |d loss / d head mask|; output_proj: norm of the head's out_proj rows")
    g.add_argument("--max_seq_length", type=int, default=None,
                   help="default: 128, or the model's position table if shorter")
    g.add_argument("--batch_size", type=int, default=32)
    v = p.add_argument_group("vocabulary pruning")
    v.add_argument("--prune_vocab", action="store_true", help="prune the vocabulary to the tokens of --vocab_texts")
    v.add_argument("--vocab_texts", nargs="+", default=None, metavar="FILE", help="UTF-8 text files, one text a line")
    v.add_argument("--vocab_text_column", type=int, default=None,
                   help="use only this TAB-separated column (1-based) of each line")
    v.add_argument("--min_count", type=int, default=1, help="keep tokens occurring at least this often")
    r = p.add_argument_group("checks and reports")
    r.add_argument("--tolerance", type=float, default=1e-4, help="max |output difference| of the checks")
    r.add_argument("--static_model", default=None, metavar="PREFIX",
                   help="also write a static inference model PREFIX.pdmodel/.pdiparams (+ info, tokenizer)")
    r.add_argument("--measure_memory", action="store_true",
                   help="measure RSS when loading the model before/after (fresh processes)")
    r.add_argument("--analyze", nargs="+", default=None, metavar="DIR",
                   help="only report on these model directories (parameters, FLOPs, files, memory)")
    r.add_argument("--names", nargs="+", default=None, help="--analyze: a name per directory")
    r.add_argument("--no_memory", action="store_true", help="--analyze: skip the memory measurement")
    r.add_argument("--output_json", default=None, help="--analyze: write the report here")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--device", default="cpu", choices=["cpu", "gpu", "xpu"])
    args = p.parse_args(argv)
    check_args(args)
    return args


def check_args(args):
    """Everything that can be checked before a model is loaded."""
    if args.analyze:
        for d in args.analyze:
            if not os.path.isdir(d):
                raise UserError(f"--analyze: {d} is not a directory")
        if args.names and len(args.names) != len(args.analyze):
            raise UserError(f"--names: {len(args.names)} names for {len(args.analyze)} directories")
        return
    if not args.model_name_or_path or not args.output_dir:
        raise UserError("--model_name_or_path and --output_dir are required (or use --analyze DIR ...)")
    if not os.path.isdir(args.model_name_or_path):
        raise UserError(f"--model_name_or_path: {args.model_name_or_path} is not a directory")
    # the output is replaced as a whole: never an input or a directory above one, nor another run's files
    sources = [("--model_name_or_path", args.model_name_or_path), ("--data_dir", args.data_dir)] + \
        [("--vocab_texts", f) for f in args.vocab_texts or []]
    outdirs.check_replaceable(args.output_dir, sources, "--output_dir")
    if args.static_model not in (None, "None", "none", ""):
        outdirs.check_static_prefix(args.static_model, sources, "--static_model", inference.TOKENIZER_SUFFIX)
    args.max_seq_length = train_args.check_max_seq_length(args.model_name_or_path, args.max_seq_length, default=128)
    pconf = pruning_config(args)
    if not pconf.prunes and not args.prune_vocab:
        raise UserError("nothing to do: give --target_num_of_heads and/or --target_ffn_size, and/or --prune_vocab")
    shape = analysis.shape_from_config(analysis.read_config_file(args.model_name_or_path),
                                       source=args.model_name_or_path)
    pconf.check(shape.heads_per_layer, shape.ffn_per_layer)
    if pconf.prunes:
        if not args.task_name:
            raise UserError("--task_name is needed for structured pruning (its data gives the importance)")
        if not 0 < args.importance_ratio < 1:
            raise UserError(f"--importance_ratio must be in (0, 1), got {args.importance_ratio}")
        for name in ("importance_max_examples", "batch_size"):
            if getattr(args, name) < 1:
                raise UserError(f"--{name} must be positive, got {getattr(args, name)}")
        if args.max_seq_length < 3:
            raise UserError(f"--max_seq_length must be at least 3, got {args.max_seq_length}")
    if args.prune_vocab:
        if not args.vocab_texts:
            raise UserError("--prune_vocab needs --vocab_texts FILE [FILE ...]")
        if args.min_count < 1:
            raise UserError(f"--min_count must be >= 1, got {args.min_count}")
        if args.vocab_text_column is not None and args.vocab_text_column < 1:
            raise UserError(f"--vocab_text_column is 1-based, got {args.vocab_text_column}")
    elif args.vocab_texts:
        raise UserError("--vocab_texts is given without --prune_vocab")
    if args.static_model in ("None", "none", ""):
        args.static_model = None


def pruning_config(args):
    return pruning.PruningConfig(args.target_num_of_heads, args.target_ffn_size, args.pruning_mode,
                                 args.n_iters, args.head_score)


# --------------------------------------------------------------------------- helpers
def has_task_head(model_dir):
    weights = find_file(model_dir, WEIGHT_FILES)
    return weights is not None and any(k.startswith("classifier.") for k in read_state_dict(weights))


def strip_task_head(model_dir):
    """Drop the classifier a headless source never had (load_model initialised it)."""
    path = find_file(model_dir, WEIGHT_FILES)   # written by save_model just before: safetensors
    state = read_state_dict(path)
    write_state_dict({k: v for k, v in state.items() if not k.startswith("classifier.")}, path)


# --------------------------------------------------------------------------- stages
def load_importance_data(args, tokenizer):
    """Importance batches (tensors) and check batches (numpy) of the task."""
    from utils.data import load_glue
    from utils.importance import split_importance
    from utils.tasks import get_task
    task = get_task(args.task_name)
    split = "train" if args.importance_split == "train" else task.dev_splits[0]
    examples = load_glue(task, args.data_dir, [split])[split]
    if args.importance_split == "train":
        _, examples = split_importance(examples, [], args.importance_split, args.importance_ratio,
                                       args.importance_max_examples, args.seed)
    else:
        examples = examples[:args.importance_max_examples]
    logger.info("importance data: %d examples of %s %s", len(examples), task.name, split)
    texts = [(e.text_a, e.text_b) for e in examples]
    batches = encode_batches(texts, tokenizer, args.max_seq_length, args.batch_size, [e.label for e in examples])
    return task, texts, batches


def run_structured(model, config, task, batches, pconf, tolerance):
    import paddle
    import paddle.nn.functional as F
    from utils.elastic_forward import forward

    def loss_fn(logits, labels):
        if task.is_regression:
            return F.mse_loss(logits.reshape([-1]), labels.reshape([-1]).astype(logits.dtype))
        return F.cross_entropy(logits, labels.reshape([-1]))

    task_type = "regression" if task.is_regression else "classification"
    tensors = [[paddle.to_tensor(a) for a in b] for b in batches]
    res = pruning.structured_prune(model, config, task_type, pconf, tensors, loss_fn)
    work = res.pop("work")
    pruning.slice_model(model, res["kept_heads"], res["kept_neurons"])
    model.eval()
    # (a) the cut model computes what the original computes with the pruned units masked out
    diff = max_diff(lambda i, s: forward(work, i, s), logits_of(model), batches[:4])
    require(diff <= tolerance, "cut model vs original with pruned units masked", diff, tolerance)
    res["check_cut_vs_masked"] = diff
    return res


def run_vocab(model, tokenizer, work_dir, head, texts, min_count, max_len, tolerance):
    counts = vocab_prune.count_tokens(tokenizer, texts)
    kept = vocab_prune.vocabulary_plan(tokenizer, model.config, counts, min_count)
    kept_set = set(kept)
    to_id = tokenizer.vocab.token_to_idx
    # Check inputs: texts whose tokens are all kept, tokenised by the original tokenizer.
    sample = [t for t in texts[:2000] if all(to_id.get(x) in kept_set for x in tokenizer.tokenize(t))][:64]
    old_batches = encode_batches([(t, None) for t in sample], tokenizer, max_len, 16)
    import paddle
    with paddle.no_grad():
        ref = [(encoder_out(model)(paddle.to_tensor(i), paddle.to_tensor(s)).numpy(),
                logits_of(model)(paddle.to_tensor(i), paddle.to_tensor(s)).numpy()) for i, s, _ in old_batches]
    old_size = len(tokenizer.vocab.idx_to_token)
    old_rows = int(model.bert.embeddings.word_embeddings.weight.shape[0])
    new_tok, remap, changed = vocab_prune.prune_vocabulary(model, tokenizer, kept, work_dir)
    new_batches = encode_batches([(t, None) for t in sample], new_tok, max_len, 16)
    diff = 0.0
    with paddle.no_grad():
        for (oi, _, _), (ni, ns, _), (r_enc, r_log) in zip(old_batches, new_batches, ref):
            mapped = np.vectorize(remap.get)(oi)
            if mapped.shape != ni.shape or not (mapped == ni).all():
                raise RuntimeError("the pruned tokenizer does not give the re-mapped ids of the original one")
            e = encoder_out(model)(paddle.to_tensor(ni), paddle.to_tensor(ns)).numpy()
            lg = logits_of(model)(paddle.to_tensor(ni), paddle.to_tensor(ns)).numpy()
            diff = max(diff, float(np.abs(e - r_enc).max()), float(np.abs(lg - r_log).max()))
    require(diff <= tolerance, f"vocabulary-pruned vs original on {len(sample)} texts of kept tokens",
            diff, tolerance)
    occurrences = sum(counts.values())
    covered = sum(c for t, c in counts.items() if c >= min_count)
    hidden = int(model.bert.embeddings.word_embeddings.weight.shape[1])
    return new_tok, {
        "lines": len(texts), "min_count": min_count, "vocab_before": old_size, "table_rows_before": old_rows,
        "vocab_after": len(kept), "distinct_tokens_in_texts": len(counts), "token_occurrences": occurrences,
        "occurrences_kept": covered, "changed_token_ids": changed,
        "word_embedding_params_before": old_rows * hidden, "word_embedding_params_after": len(kept) * hidden,
        "check_texts": len(sample), "check_max_abs_diff": diff, "source_had_task_head": head}


def write_static(model, tokenizer, info, batches, work, target, max_seq_length, tolerance):
    """Static model into ``work`` (checked against ``model``); returns (files, report)."""
    prefix = os.path.join(work, "model")
    inference.save_static(model, prefix)
    pred = inference.create_predictor(prefix, mkldnn=False)
    import paddle
    worst = 0.0
    with paddle.no_grad():
        for ids, seg, *_ in batches:
            ref = model(paddle.to_tensor(ids), token_type_ids=paddle.to_tensor(seg)).numpy()
            worst = max(worst, float(np.abs(inference.run_predictor(pred, ids, seg) - ref).max()))
    require(worst <= tolerance, "static model vs dynamic", worst, tolerance)
    target = os.path.abspath(target)
    inference.write_info(prefix, {"task_type": info.get("task_type", "classification"),
                                  "task_name": info.get("task_name"), "label_list": info.get("label_list"),
                                  "max_seq_length": max_seq_length,
                                  "tokenizer_dir": os.path.basename(target) + inference.TOKENIZER_SUFFIX})
    tokenizer.save_pretrained(prefix + inference.TOKENIZER_SUFFIX)
    return prefix, {"static_model": target, "static_vs_dynamic": worst,
                    "static_bytes": os.path.getsize(prefix + ".pdiparams")
                    + os.path.getsize(inference.model_file(prefix))}


def analyze_dirs(dirs, names=None, no_memory=False, output_json=None):
    names = names or [os.path.basename(os.path.normpath(d)) for d in dirs]
    memory = [None] * len(dirs) if no_memory else model_report.measure_load_memory(dirs)
    rows = [model_report.describe(d, memory=m) for d, m in zip(dirs, memory)]
    print(model_report.format_report(rows, names), flush=True)
    if memory[0] is not None:
        print("+RSS load: VmRSS after load_model(dir) minus before, in a fresh process with python, paddle and "
              "paddlenlp already imported (model + tokenizer, after gc), MB", flush=True)
    if output_json:
        write_json_atomic(output_json, {"models": dict(zip(names, rows))})
    return rows


# --------------------------------------------------------------------------- main
def load_source(src, task_name):
    """(model, tokenizer, config, task or None, whether the source has a task head)."""
    if task_name is None:
        model, tokenizer, config = load_model(src)
        return model, tokenizer, config, None, has_task_head(src)
    from utils.tasks import get_task
    task = get_task(task_name)
    model, tokenizer, config = load_model(src, "regression" if task.is_regression else "classification",
                                          task.num_labels, require_head=True, task_name=task.name)
    return model, tokenizer, config, task, True


def saved_info(src, task, pconf, model):
    """The suite info save_model records; drops the supernet mark of the source."""
    info = {"pruned_from": os.path.abspath(src)}
    if task is not None:
        info.update(task_type="regression" if task.is_regression else "classification", task_name=task.name,
                    label_list=list(task.labels or []), pruning=pconf.to_dict())
    suite = suite_info(model.config)
    suite.pop("supernet", None)   # a cut model is no supernet any more
    setattr(model.config, SUITE_KEY, suite)
    return info


def brief_of(report, before, after):
    """The one-line JSON summary printed at the end."""
    brief = {k: v for k, v in report.items() if k not in ("before", "after", "structured", "vocabulary")}
    if "structured" in report:
        s = report["structured"]
        brief["structured"] = {k: s[k] for k in ("pruning_mode", "head_score", "n_iters", "check_cut_vs_masked")}
    if "vocabulary" in report:
        brief["vocabulary"] = {k: report["vocabulary"][k]
                               for k in ("vocab_before", "vocab_after", "check_max_abs_diff")}
    brief.update(heads_before=before["heads_per_layer"], heads_after=after["heads_per_layer"],
                 ffn_before=before["ffn_per_layer"], ffn_after=after["ffn_per_layer"],
                 params_before=before["params"]["total"], params_after=after["params"]["total"],
                 weights_bytes_before=before["files"]["weights_bytes"],
                 weights_bytes_after=after["files"]["weights_bytes"])
    return brief


def prune_in_memory(args, pconf, texts, model, tokenizer, config, task, head, stage):
    """Structured then vocabulary pruning of ``model`` (checked); returns (report, tokenizer, importance texts)."""
    report = {"source": os.path.abspath(args.model_name_or_path), "output_dir": os.path.abspath(args.output_dir)}
    imp_texts = None
    if pconf.prunes:
        task, imp_texts, batches = load_importance_data(args, tokenizer)
        report["structured"] = dict(pconf.to_dict(), importance_split=args.importance_split,
                                    importance_examples=len(imp_texts),
                                    **run_structured(model, config, task, batches, pconf, args.tolerance))
    if args.prune_vocab:
        tokenizer, vocab = run_vocab(model, tokenizer, os.path.join(stage, "tok"), head, texts, args.min_count,
                                     args.max_seq_length or 128, args.tolerance)
        report["vocabulary"] = dict(texts=[os.path.abspath(f) for f in args.vocab_texts],
                                    text_column=args.vocab_text_column, **vocab)
    return report, tokenizer, imp_texts


def main(argv=None):
    args = parse_args(argv)
    parallel.setup_logging()
    if args.analyze:
        return analyze_dirs(args.analyze, args.names, args.no_memory, args.output_json)
    pconf = pruning_config(args)
    texts = vocab_prune.read_texts(args.vocab_texts, args.vocab_text_column) if args.prune_vocab else None
    import paddle
    paddle.set_device(args.device if args.device != "gpu" or paddle.is_compiled_with_cuda() else "cpu")
    parallel.set_seed(args.seed)
    src, out_dir = args.model_name_or_path, os.path.abspath(args.output_dir)
    model, tokenizer, config, task, head = load_source(src, args.task_name if pconf.prunes else None)
    model.eval()
    before = model_report.describe(src, model)
    info = saved_info(src, task, pconf, model)
    with staging_dir(out_dir) as stage:
        report, tokenizer, imp_texts = prune_in_memory(args, pconf, texts, model, tokenizer, config, task, head,
                                                       stage)
        if args.prune_vocab:
            info["vocab_pruned"] = {k: report["vocabulary"][k] for k in ("vocab_before", "vocab_after", "min_count")}
        model_dir = os.path.join(stage, "model")
        save_model(model, tokenizer, model_dir, info)
        if not head:
            strip_task_head(model_dir)
        check_texts = imp_texts[:64] if imp_texts else [(t, None) for t in texts[:64]]
        reloaded, new_tok, check, report["check_reload"] = check_reload(model, model_dir, head, check_texts,
                                                                         args.max_seq_length, args.tolerance)
        if args.static_model:
            static_tmp, report["static"] = write_static(reloaded, new_tok, suite_info(reloaded.config), check,
                                                        os.path.join(stage, "static"), args.static_model,
                                                        args.max_seq_length, args.tolerance)
        memory = model_report.measure_load_memory([src, model_dir]) if args.measure_memory else [None, None]
        before["memory"] = memory[0]
        after = dict(model_report.describe(model_dir, reloaded, memory=memory[1]), dir=out_dir)
        report.update(before=before, after=after, param_ratio=after["params"]["total"] / before["params"]["total"],
                      weights_bytes_saved=before["files"]["weights_bytes"] - after["files"]["weights_bytes"])
        write_json_atomic(os.path.join(model_dir, "prune_info.json"), report)
        publish_dir(model_dir, out_dir)
        if args.static_model:
            publish_prefix(static_tmp, os.path.abspath(args.static_model))
    print(model_report.format_report([before, after], ["before", "after"]), flush=True)
    if memory[0] is not None:
        print("+RSS load: VmRSS after load_model(dir) minus before, fresh process each (python, paddle, paddlenlp "
              "imported first); MB", flush=True)
    print(json.dumps(brief_of(report, before, after)), flush=True)
    return report


if __name__ == "__main__":
    run_main(main)
