"""Stage 3: cut one width out of an OFA checkpoint and write it as a
dynamic-graph model (strictly reloadable) and a Paddle static inference model.

    python export_model.py --model_name_or_path out/SST-2-ofa/width_0.5000 --width_mult 0.5 \
        --sub_model_output_dir out/SST-2-ofa/dynamic_0.5 --static_sub_model out/SST-2-ofa/static_0.5/model

Before it finishes it checks, on real dev inputs (``--data_dir``) or given
text (``--check_text``), that the static model, the reloaded dynamic model and
the supernet at that width agree (max |difference| <= --tolerance); nothing is
left at the output paths if they do not.  ``export_info.json`` records the
shapes, parameter counts, file sizes and the check.
"""
import utils  # noqa: F401  (first: stack fixes before paddle is imported)

import argparse
import json
import logging
import os

import numpy as np

from utils import inference, parallel, runs, train_args
from utils import output_dir as outdirs
from utils.batching import text_batches
from utils.check_inputs import load_check_texts
from utils.errors import UserError, run_main
from utils.elastic_forward import forward as elastic_forward
from utils.extract import extract_subnet, param_count
from utils.supernet import build_supernet, set_width
from utils.widths import Width, depth_layers, parse_width, snap_widths
from utils.modeling import WEIGHT_FILES, find_file, layer_shapes, load_model, save_model, suite_info
from utils.publish import publish_dir, publish_prefix, staging_dir, write_json_atomic

logger = logging.getLogger("bert_suite")


def optional_path(value):
    """A path flag that may be switched off with 'None' (upstream command lines)."""
    return None if value in ("None", "none", "") else value


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_type", default="bert", choices=["bert"])
    p.add_argument("--model_name_or_path", required=True,
                   help="an OFA checkpoint directory (width_*/ or final/) or any model directory of the suite")
    p.add_argument("--width_mult", default="1.0", help="width to export (decimal or fraction), one that was trained")
    p.add_argument("--depth_mult", default="1.0",
                   help="depth to export (DynaBERT layer selection), one that was trained with --depth_mult_list")
    p.add_argument("--sub_model_output_dir", required=True, help="where the dynamic-graph sub-model is written")
    p.add_argument("--static_sub_model", default=None, type=optional_path,
                   help="path prefix of the static model (PREFIX.pdmodel/.pdiparams); omit or 'None' to skip")
    p.add_argument("--max_seq_length", type=int, default=None,
                   help="default: 128, or the model's position table if shorter")
    p.add_argument("--data_dir", default=None, help="task data; the export check runs on its dev inputs")
    p.add_argument("--dev_file", default=None,
                   help="own data: the dev file (TSV/CSV) the model was fine-tuned with; the check runs on its "
                        "texts, read with the columns the model records")
    p.add_argument("--check_text", default=None, help="file of raw text (one example a line, TAB for pairs) "
                                                       "for the export check instead of dev data")
    p.add_argument("--check_examples", type=int, default=64)
    p.add_argument("--tolerance", type=float, default=1e-4)
    p.add_argument("--force", action="store_true", help="export a width that was not trained (with a warning)")
    p.add_argument("--device", default="cpu", choices=["cpu", "gpu", "xpu"])
    p.add_argument("--n_gpu", type=int, default=None, help="older spelling: 0 = cpu")
    args = p.parse_args(argv)
    check_outputs(args)
    # normalised here, once: the model's position table
    args.max_seq_length = train_args.check_max_seq_length(args.model_name_or_path, args.max_seq_length, default=128)
    if args.max_seq_length <= 2:
        raise UserError(f"--max_seq_length must be > 2, got {args.max_seq_length}")
    return args


def check_outputs(args):
    """The outputs are replaced as a whole: never an input, nor a directory
    holding more than a model the suite wrote (an OFA run, a user's notes)."""
    sources = [(f"--{n}", getattr(args, n)) for n in ("model_name_or_path", "data_dir", "dev_file", "check_text")]
    outdirs.check_replaceable(args.sub_model_output_dir, sources, "--sub_model_output_dir")
    if args.static_sub_model:
        outdirs.check_static_prefix(args.static_sub_model, sources, "--static_sub_model", inference.TOKENIZER_SUFFIX)


def _untrained(msg, force):
    if not force:
        raise UserError(msg + " (pass --force to export it anyway)")
    logger.warning("%s; exporting anyway (--force)", msg)


def choose_width(width_mult, force, source, config, info):
    """The Width to cut at --width_mult (snapped to whole heads), one the
    checkpoint ``source`` was trained with unless ``force``."""
    try:
        requested = parse_width(width_mult)
    except ValueError as e:
        raise UserError(f"--width_mult: {e}")
    width = snap_widths([requested], config.num_attention_heads, config.intermediate_size,
                                flag="--width_mult")[0]
    trained = (info.get("supernet") or {}).get("widths")
    if trained is None:
        if width.ratio != 1.0 and not force:
            raise UserError(f"--width_mult {width_mult}: {source} is not an OFA checkpoint "
                            f"(its heads are not ordered by importance); only width 1.0 can be exported "
                            f"(or pass --force)")
    elif not any(abs(width.ratio - t) < 1e-6 for t in trained):
        _untrained(f"--width_mult {width_mult} (= {width.heads} heads) was not trained; trained widths: "
                   + ", ".join(f"{t:.4f}" for t in trained), force)
    return width


def choose_layers(depth_mult, force, config, info):
    """Encoder layers kept at --depth_mult (None = all)."""
    keep = depth_layers(config.num_hidden_layers, depth_mult, flag="--depth_mult")
    if len(keep) == config.num_hidden_layers:
        return None
    trained = (info.get("supernet") or {}).get("depths") or [1.0]
    ratio = len(keep) / config.num_hidden_layers
    if not any(abs(ratio - t) < 1e-6 for t in trained):
        _untrained(f"--depth_mult {depth_mult} (= {len(keep)} of {config.num_hidden_layers} layers) was not "
                   f"trained; trained depths: " + ", ".join(f"{t:.4f}" for t in trained), force)
    return keep


def check_pruned_request(width_mult, depth_mult, source, model):
    """A model pruned by prune.py is exported whole: its width is its own.
    Returns a Width describing it (heads and FFN of its first layer)."""
    heads, ffn = layer_shapes(model)
    for flag, value in (("--width_mult", width_mult), ("--depth_mult", depth_mult)):
        try:
            ok = abs(parse_width(value) - 1.0) < 1e-6
        except ValueError as e:
            raise UserError(f"{flag}: {e}")
        if not ok:
            raise UserError(f"{flag} {value}: {source} is already pruned (heads per layer "
                            f"{heads}, FFN {ffn}); it is exported as it is, with {flag} 1.0")
    full = model.config.num_attention_heads
    return Width(requested=1.0, ratio=heads[0] / full, heads=heads[0], ffn=ffn[0])


def file_size(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)
    return os.path.getsize(path) if os.path.isfile(path) else 0


def max_diff(outs, refs):
    return max(float(np.abs(a - b).max()) for a, b in zip(outs, refs))


def cut_subnet(model, config, info, width_mult, depth_mult, force, source):
    """(width, kept layers or None, reference forward at that width, the
    sub-model): the supernet at the width (the full model at width 1.0); a
    model pruned by prune.py is exported as it is."""
    model.eval()
    if "heads_per_layer" in info:
        width = check_pruned_request(width_mult, depth_mult, source, model)
        return width, None, (lambda i, s: model(i, token_type_ids=s)), model
    width = choose_width(width_mult, force, source, config, info)
    layers = choose_layers(depth_mult, force, config, info)
    ofa = build_supernet(model, [width])
    ofa.model.eval()
    set_width(ofa, width, layers)
    sub = extract_subnet(model, width, config, info.get("task_type", "classification"), layers=layers)
    return width, layers, (lambda i, s: elastic_forward(ofa.model, i, s)), sub


def check_static(reloaded, prefix, batches, dyn_out, reference):
    """Write the static model at ``prefix``; its differences from the
    reloaded dynamic model and from the supernet."""
    inference.save_static(reloaded, prefix)
    pred = inference.create_predictor(prefix, mkldnn=False)
    st_out = [inference.run_predictor(pred, i, s) for i, s in batches]
    return {"static_vs_dynamic": max_diff(st_out, dyn_out), "static_vs_supernet": max_diff(st_out, reference)}


def write_checked(out_dir, static_prefix, tolerance, sub, tokenizer, sub_info, static_info, export_info, batches,
                  reference):
    """Save the sub-model (and the static model) in a staging directory,
    reload it strictly, compare with ``reference`` and publish only if every
    difference is within ``tolerance``.  Returns (export_info completed, diffs)."""
    import paddle
    out_dir = os.path.abspath(out_dir)
    with staging_dir(out_dir) as work:
        tmp_dyn = os.path.join(work, "dynamic")
        save_model(sub, tokenizer, tmp_dyn, sub_info)
        reloaded, _, _ = load_model(tmp_dyn, warn_unfinished=False)   # strict: every tensor used, shapes from config
        reloaded.eval()
        with paddle.no_grad():
            dyn_out = [reloaded(paddle.to_tensor(i), token_type_ids=paddle.to_tensor(s)).numpy() for i, s in batches]
        diffs = {"dynamic_vs_supernet": max_diff(dyn_out, reference)}
        tmp_prefix = os.path.join(work, "static", "model") if static_prefix else None
        if tmp_prefix:
            diffs.update(check_static(reloaded, tmp_prefix, batches, dyn_out, reference))
        worst = max(diffs.values())
        heads, ffn = layer_shapes(reloaded)
        info = dict(export_info, heads_per_layer=heads, ffn_per_layer=ffn, check={
            "examples": int(sum(len(i) for i, _ in batches)), "max_abs_diff": worst, **diffs,
            "tolerance": tolerance, "passed": worst <= tolerance},
            dynamic_model_dir=out_dir, dynamic_model_bytes=file_size(find_file(tmp_dyn, WEIGHT_FILES)))
        if worst > tolerance:
            raise SystemExit(f"error: export check failed: outputs differ by {worst:.3e} (> {tolerance}): "
                             + ", ".join(f"{k}={v:.3e}" for k, v in diffs.items()) + "; nothing written")
        if tmp_prefix:
            prefix = os.path.abspath(static_prefix)
            info.update(static_model=prefix, static_model_bytes=file_size(tmp_prefix + ".pdiparams")
                        + file_size(inference.model_file(tmp_prefix)))
            inference.write_info(tmp_prefix, dict(static_info, tokenizer_dir=os.path.basename(prefix)
                                                  + inference.TOKENIZER_SUFFIX))
            tokenizer.save_pretrained(tmp_prefix + inference.TOKENIZER_SUFFIX)
            publish_prefix(tmp_prefix, prefix)
        write_json_atomic(os.path.join(tmp_dyn, "export_info.json"), info)
        publish_dir(tmp_dyn, out_dir)
    return info, diffs


def main(argv=None):
    args = parse_args(argv)
    parallel.setup_logging()
    parallel.setup_device(args.device, args.n_gpu)   # --device gpu without CUDA support is an error, not a quiet CPU run
    import paddle

    model, tokenizer, config = load_model(args.model_name_or_path, require_head=True)
    info = suite_info(config)
    task_type, pruned = info.get("task_type", "classification"), "heads_per_layer" in info
    width, layers, forward, sub = cut_subnet(model, config, info, args.width_mult, args.depth_mult, args.force,
                                             args.model_name_or_path)
    texts = load_check_texts(info, args.check_examples, args.check_text, args.dev_file, args.data_dir)
    batches = text_batches(tokenizer, texts, args.max_seq_length)
    with paddle.no_grad():
        reference = [forward(paddle.to_tensor(i), paddle.to_tensor(s)).numpy() for i, s in batches]

    n_full, n_sub = param_count(model), param_count(sub)
    n_layers = len(layers) if layers is not None else config.num_hidden_layers
    depth = n_layers / config.num_hidden_layers
    sub_info = dict(info, width=width.ratio, width_requested=width.requested, parent=args.model_name_or_path)
    if layers is not None:
        sub_info.update(depth=depth, kept_layers=layers)
    sub_info.pop("supernet", None)
    static_info = {"task_type": task_type, "task_name": info.get("task_name"), "label_list": info.get("label_list"),
                   "max_seq_length": args.max_seq_length, "width": None if pruned else width.ratio,
                   "depth": depth, "pruned": pruned}
    if info.get("data_split"):   # a NER model: how its training cut dev out of train (read by quantize.py)
        static_info["data_split"] = info["data_split"]
    export_info = {"width": width.ratio, "width_requested": width.requested, "heads_per_layer": None,
                   "ffn_per_layer": None, "num_layers": n_layers, "task_type": task_type, "depth": depth,
                   "kept_layers": layers if layers is not None else list(range(config.num_hidden_layers)),
                   "params_before": n_full, "params_after": n_sub, "param_ratio": n_sub / n_full}

    # Write everything beside its destination, check, then move into place.
    made_dirs = runs.make_dirs(os.path.dirname(os.path.abspath(args.sub_model_output_dir)))
    if args.static_sub_model:
        made_dirs += runs.make_dirs(os.path.dirname(os.path.abspath(args.static_sub_model)))
    try:
        export_info, diffs = write_checked(args.sub_model_output_dir, args.static_sub_model, args.tolerance, sub,
                                           tokenizer, sub_info, static_info, export_info, batches, reference)
    except BaseException:
        runs.remove_empty_dirs(made_dirs)
        raise
    logger.info("width %.4f: %d heads x %d layers, FFN %d; parameters %s -> %s (%.1f%%)", width.ratio, width.heads,
                n_layers, width.ffn, f"{n_full:,}", f"{n_sub:,}", 100.0 * n_sub / n_full)
    logger.info("check on %d examples: %s", export_info["check"]["examples"],
                ", ".join(f"{k}={v:.2e}" for k, v in diffs.items()))
    print(json.dumps(export_info), flush=True)


if __name__ == "__main__":
    run_main(main)
