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
See utils/pruning.py for exactly what is scored and how units are chosen.
"""
import utils  # noqa: F401  (first: stack fixes before paddle is imported)

import argparse
import json
import logging
import os
import shutil
import tempfile

import numpy as np

from utils import analysis, inference, parallel, pruning, publish, train_args
from utils import output_dir as outdirs
from utils.errors import UserError, run_main
from utils.modeling import (SUITE_KEY, WEIGHT_FILES, find_file, load_model, read_state_dict, save_model,
                            suite_info, write_state_dict)
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
    pconf = pruning.PruningConfig(args.target_num_of_heads, args.target_ffn_size, args.pruning_mode,
                                  args.n_iters, args.head_score)
    if not pconf.prunes and not args.prune_vocab:
        raise UserError("nothing to do: give --target_num_of_heads and/or --target_ffn_size, and/or --prune_vocab")
    shape = analysis.shape_from_config(analysis.read_config_file(args.model_name_or_path),
                                       source=args.model_name_or_path)
    pconf.check(shape.heads_per_layer, shape.ffn_per_layer)
    args.pconf = pconf
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
        args.texts = pruning.read_texts(args.vocab_texts, args.vocab_text_column)
    elif args.vocab_texts:
        raise UserError("--vocab_texts is given without --prune_vocab")
    if args.static_model in ("None", "none", ""):
        args.static_model = None


# --------------------------------------------------------------------------- helpers
def encode_batches(texts, tokenizer, max_len, batch_size, labels=None):
    """(input_ids, token_type_ids, labels) numpy batches of (a, b) texts."""
    from utils.data import Example, collate, encode
    exs = [Example(a, b, None if labels is None else labels[i]) for i, (a, b) in enumerate(texts)]
    feats = encode(exs, tokenizer, max_len)
    is_reg = labels is not None and isinstance(labels[0], float)
    return [collate(feats[i:i + batch_size], tokenizer.pad_token_id, is_reg) for i in range(0, len(feats), batch_size)]


def max_diff(fn_a, fn_b, batches):
    import paddle
    worst = 0.0
    with paddle.no_grad():
        for ids, seg, *_ in batches:
            i, s = paddle.to_tensor(ids), paddle.to_tensor(seg)
            a, b = fn_a(i, s), fn_b(i, s)
            worst = max(worst, float(np.abs(a.numpy() - b.numpy()).max()))
    return worst


def encoder_out(model):
    return lambda ids, seg: model.bert(ids, token_type_ids=seg)[0]


def logits_of(model):
    return lambda ids, seg: model(ids, token_type_ids=seg)


def has_task_head(model_dir):
    weights = find_file(model_dir, WEIGHT_FILES)
    return weights is not None and any(k.startswith("classifier.") for k in read_state_dict(weights))


def strip_task_head(model_dir):
    """Drop the classifier a headless source never had (load_model initialised it)."""
    path = find_file(model_dir, WEIGHT_FILES)   # written by save_model just before: safetensors
    state = read_state_dict(path)
    write_state_dict({k: v for k, v in state.items() if not k.startswith("classifier.")}, path)


def require(ok, what, diff, tol):
    logger.info("check %s: max |difference| = %.3e", what, diff)
    if not ok:
        raise SystemExit(f"error: check failed: {what} differ by {diff:.3e} (> {tol}); nothing written")


# --------------------------------------------------------------------------- stages
def load_importance_data(args, tokenizer):
    """Importance batches (tensors) and check batches (numpy) of the task."""
    from utils.data import load_glue
    from utils.distill import split_importance
    from utils.tasks import get_task
    task = get_task(args.task_name)
    split = "train" if args.importance_split == "train" else task.dev_splits[0]
    examples = load_glue(task, args.data_dir, [split])[split]
    if args.importance_split == "train":
        _, examples = split_importance(args, examples, [])
    else:
        examples = examples[:args.importance_max_examples]
    logger.info("importance data: %d examples of %s %s", len(examples), task.name, split)
    texts = [(e.text_a, e.text_b) for e in examples]
    batches = encode_batches(texts, tokenizer, args.max_seq_length, args.batch_size, [e.label for e in examples])
    return task, texts, batches


def run_structured(args, model, config, task, batches):
    import paddle
    import paddle.nn.functional as F
    from utils import elastic

    def loss_fn(logits, labels):
        if task.is_regression:
            return F.mse_loss(logits.reshape([-1]), labels.reshape([-1]).astype(logits.dtype))
        return F.cross_entropy(logits, labels.reshape([-1]))

    task_type = "regression" if task.is_regression else "classification"
    tensors = [[paddle.to_tensor(a) for a in b] for b in batches]
    res = pruning.structured_prune(model, config, task_type, args.pconf, tensors, loss_fn)
    work = res.pop("work")
    pruning.slice_model(model, res["kept_heads"], res["kept_neurons"])
    model.eval()
    # (a) the cut model computes what the original computes with the pruned units masked out
    diff = max_diff(lambda i, s: elastic.forward(work, i, s), logits_of(model), batches[:4])
    require(diff <= args.tolerance, "cut model vs original with pruned units masked", diff, args.tolerance)
    res["check_cut_vs_masked"] = diff
    return res


def run_vocab(args, model, tokenizer, work_dir, head):
    counts = pruning.count_tokens(tokenizer, args.texts)
    kept = pruning.vocabulary_plan(tokenizer, model.config, counts, args.min_count)
    kept_set = set(kept)
    to_id = tokenizer.vocab.token_to_idx
    # Check inputs: texts whose tokens are all kept, tokenised by the original tokenizer.
    sample = [t for t in args.texts[:2000] if all(to_id.get(x) in kept_set for x in tokenizer.tokenize(t))][:64]
    old_batches = encode_batches([(t, None) for t in sample], tokenizer, args.max_seq_length or 128, 16)
    import paddle
    with paddle.no_grad():
        ref = [(encoder_out(model)(paddle.to_tensor(i), paddle.to_tensor(s)).numpy(),
                logits_of(model)(paddle.to_tensor(i), paddle.to_tensor(s)).numpy()) for i, s, _ in old_batches]
    old_size = len(tokenizer.vocab.idx_to_token)
    old_rows = int(model.bert.embeddings.word_embeddings.weight.shape[0])
    new_tok, remap, changed = pruning.prune_vocabulary(model, tokenizer, kept, work_dir)
    new_batches = encode_batches([(t, None) for t in sample], new_tok, args.max_seq_length or 128, 16)
    diff = 0.0
    with paddle.no_grad():
        for (oi, _, _), (ni, ns, _), (r_enc, r_log) in zip(old_batches, new_batches, ref):
            mapped = np.vectorize(remap.get)(oi)
            if mapped.shape != ni.shape or not (mapped == ni).all():
                raise RuntimeError("the pruned tokenizer does not give the re-mapped ids of the original one")
            e = encoder_out(model)(paddle.to_tensor(ni), paddle.to_tensor(ns)).numpy()
            lg = logits_of(model)(paddle.to_tensor(ni), paddle.to_tensor(ns)).numpy()
            diff = max(diff, float(np.abs(e - r_enc).max()), float(np.abs(lg - r_log).max()))
    require(diff <= args.tolerance, f"vocabulary-pruned vs original on {len(sample)} texts of kept tokens",
            diff, args.tolerance)
    occurrences = sum(counts.values())
    covered = sum(c for t, c in counts.items() if c >= args.min_count)
    hidden = int(model.bert.embeddings.word_embeddings.weight.shape[1])
    return new_tok, {
        "texts": [os.path.abspath(f) for f in args.vocab_texts], "text_column": args.vocab_text_column,
        "lines": len(args.texts), "min_count": args.min_count, "vocab_before": old_size, "table_rows_before": old_rows,
        "vocab_after": len(kept), "distinct_tokens_in_texts": len(counts), "token_occurrences": occurrences,
        "occurrences_kept": covered, "changed_token_ids": changed,
        "word_embedding_params_before": old_rows * hidden, "word_embedding_params_after": len(kept) * hidden,
        "check_texts": len(sample), "check_max_abs_diff": diff, "source_had_task_head": head}


def write_static(args, model, tokenizer, info, batches, work):
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
    require(worst <= args.tolerance, "static model vs dynamic", worst, args.tolerance)
    target = os.path.abspath(args.static_model)
    inference.write_info(prefix, {"task_type": info.get("task_type", "classification"),
                                  "task_name": info.get("task_name"), "label_list": info.get("label_list"),
                                  "max_seq_length": args.max_seq_length,
                                  "tokenizer_dir": os.path.basename(target) + inference.TOKENIZER_SUFFIX})
    tokenizer.save_pretrained(prefix + inference.TOKENIZER_SUFFIX)
    return prefix, {"static_model": target, "static_vs_dynamic": worst,
                    "static_bytes": os.path.getsize(prefix + ".pdiparams")
                    + os.path.getsize(inference.model_file(prefix))}


def move_static(tmp_prefix, target):
    os.makedirs(os.path.dirname(target), exist_ok=True)
    src_dir = os.path.dirname(tmp_prefix)
    for name in os.listdir(src_dir):
        if not name.startswith("model"):
            continue
        dst = os.path.join(os.path.dirname(target), name.replace("model", os.path.basename(target), 1))
        if os.path.isdir(dst):
            shutil.rmtree(dst)
        os.replace(os.path.join(src_dir, name), dst)


def analyze_dirs(args):
    names = args.names or [os.path.basename(os.path.normpath(d)) for d in args.analyze]
    memory = [None] * len(args.analyze) if args.no_memory else pruning.measure_load_memory(args.analyze)
    rows = [pruning.describe(d, memory=m) for d, m in zip(args.analyze, memory)]
    print(pruning.format_report(rows, names), flush=True)
    if memory[0] is not None:
        print("+RSS load: VmRSS after load_model(dir) minus before, in a fresh process with python, paddle and "
              "paddlenlp already imported (model + tokenizer, after gc), MB", flush=True)
    if args.output_json:
        publish.write_json_atomic(args.output_json, {"models": dict(zip(names, rows))})
    return rows


# --------------------------------------------------------------------------- main
def main(argv=None):
    args = parse_args(argv)
    parallel.setup_logging()
    if args.analyze:
        return analyze_dirs(args)
    import paddle
    paddle.set_device(args.device if args.device != "gpu" or paddle.is_compiled_with_cuda() else "cpu")
    parallel.set_seed(args.seed)
    src, pconf = args.model_name_or_path, args.pconf

    task = texts = batches = None
    if pconf.prunes:
        from utils.tasks import get_task
        task = get_task(args.task_name)
        model, tokenizer, config = load_model(src, "regression" if task.is_regression else "classification",
                                              task.num_labels, require_head=True, task_name=task.name)
        task, texts, batches = load_importance_data(args, tokenizer)
        head = True
    else:
        model, tokenizer, config = load_model(src)
        head = has_task_head(src)
    model.eval()
    before = pruning.describe(src, model)

    info = {"pruned_from": os.path.abspath(src)}
    if task is not None:
        info.update(task_type="regression" if task.is_regression else "classification", task_name=task.name,
                    label_list=list(task.labels or []), pruning=pconf.to_dict())
    suite = suite_info(model.config)
    suite.pop("supernet", None)   # a cut model is no supernet any more
    setattr(model.config, SUITE_KEY, suite)

    report = {"source": os.path.abspath(src), "output_dir": os.path.abspath(args.output_dir)}
    out_dir = os.path.abspath(args.output_dir)
    os.makedirs(os.path.dirname(out_dir), exist_ok=True)
    stage = tempfile.mkdtemp(prefix=".prune-", dir=os.path.dirname(out_dir))
    try:
        if pconf.prunes:
            report["structured"] = dict(pconf.to_dict(), importance_split=args.importance_split,
                                        importance_examples=len(texts),
                                        **run_structured(args, model, config, task, batches))
        if args.prune_vocab:
            tokenizer, report["vocabulary"] = run_vocab(args, model, tokenizer, os.path.join(stage, "tok"), head)
            info["vocab_pruned"] = {"vocab_before": report["vocabulary"]["vocab_before"],
                                    "vocab_after": report["vocabulary"]["vocab_after"],
                                    "min_count": args.min_count}
        model_dir = os.path.join(stage, "model")
        save_model(model, tokenizer, model_dir, info)
        if not head:
            strip_task_head(model_dir)
        # (c) the directory reloads strictly and computes what the model in memory computes
        reloaded, new_tok, _ = load_model(model_dir)
        reloaded.eval()
        check_texts = texts[:64] if texts else [(t, None) for t in args.texts[:64]]
        check = encode_batches(check_texts, new_tok, args.max_seq_length, 16)
        diff = max_diff(encoder_out(model), encoder_out(reloaded), check)
        if head:
            diff = max(diff, max_diff(logits_of(model), logits_of(reloaded), check))
        require(diff <= args.tolerance, "reloaded directory vs model in memory", diff, args.tolerance)
        report["check_reload"] = diff
        static_tmp = None
        if args.static_model:
            static_tmp, report["static"] = write_static(args, reloaded, new_tok, suite_info(reloaded.config), check,
                                                        os.path.join(stage, "static"))
        memory = pruning.measure_load_memory([src, model_dir]) if args.measure_memory else [None, None]
        before["memory"] = memory[0]
        after = pruning.describe(model_dir, reloaded, memory=memory[1])
        after["dir"] = out_dir
        report.update(before=before, after=after, param_ratio=after["params"]["total"] / before["params"]["total"],
                      weights_bytes_saved=before["files"]["weights_bytes"] - after["files"]["weights_bytes"])
        publish.write_json_atomic(os.path.join(model_dir, "prune_info.json"), report)
        publish.publish_dir(model_dir, out_dir)
        if static_tmp:
            move_static(static_tmp, os.path.abspath(args.static_model))
    finally:
        shutil.rmtree(stage, ignore_errors=True)

    print(pruning.format_report([before, after], ["before", "after"]), flush=True)
    if memory[0] is not None:
        print("+RSS load: VmRSS after load_model(dir) minus before, fresh process each (python, paddle, paddlenlp "
              "imported first); MB", flush=True)
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
    print(json.dumps(brief), flush=True)
    return report


if __name__ == "__main__":
    run_main(main)
