"""Model loading and saving: one place that decides how a BERT is built,
which weights it takes, and what its saved directory records.

A saved model directory is PaddleNLP's ``save_pretrained`` layout
(``config.json``, ``model.safetensors``, tokenizer files); a pruned model
keeps its weights in ``model.pruned.safetensors`` instead, so that
PaddleNLP's ``from_pretrained``, which cannot build pruned shapes, fails
rather than skipping the pruned tensors.

Weights are written as safetensors (no code can run from them).  Pickle-based
``.pdparams`` written by PaddleNLP / ``paddle.save`` (fine-tuned models users
bring, and the suite's earlier outputs) are still read, but only through
:mod:`utils.safe_pickle`, which rebuilds numpy arrays and refuses every other
global.  When a directory holds both formats, safetensors wins.  The suite adds
one key to ``config.json``, ``compression_suite``, recording what a loader
must know to rebuild the model exactly:

* ``task_type``: ``classification`` | ``regression`` | ``multilabel`` |
  ``token_classification`` (so export and predict never have to ask);
* ``task_name`` and ``label_list``;
* ``heads_per_layer`` / ``ffn_per_layer``: pruned shapes (absent = full size);
* ``supernet``: for OFA checkpoints, the trained widths (and depths).

Loading is strict: every tensor of the file is used and fits its parameter;
anything else is a :class:`UserError` naming the file and the tensor, never a
silently half-initialised model (PaddleNLP #1466, PaddleSlim #716).  The only
tolerated gap is a task head (classifier) missing from a checkpoint that has
no head at all (a pre-trained encoder), which is initialised and reported.
"""
import json
import logging
import os

import numpy as np

from .errors import UserError
from .publish import interrupted_publish, publish_dir, staged_file, staging_dir, write_json_atomic

logger = logging.getLogger("bert_suite")

SUITE_KEY = "compression_suite"
CONFIG_FILES = ("config.json", "model_config.json")
# A pruned model's weights go to PRUNED_WEIGHTS, not to paddlenlp's file name:
# ``from_pretrained`` would build the full-size model from config.json and
# skip every pruned tensor with a mere warning (PaddleNLP #1466, PaddleSlim
# #716); without its file it raises instead.  The suite's loader reads both.
SAFE_WEIGHTS = "model.safetensors"
PRUNED_WEIGHTS = "model.pruned.safetensors"
LEGACY_WEIGHTS = "model_state.pdparams"
LEGACY_PRUNED_WEIGHTS = "model_state.pruned.pdparams"     # written by earlier versions of the suite
WEIGHT_FILES = (PRUNED_WEIGHTS, SAFE_WEIGHTS, LEGACY_PRUNED_WEIGHTS, LEGACY_WEIGHTS)
TASK_TYPES = ("classification", "regression", "multilabel", "token_classification")
HEAD_PREFIXES = ("classifier.",)
# Pre-training heads that a fine-tuning model does not have (BertForPretraining checkpoints).
IGNORABLE_PREFIXES = ("cls.",)


# --------------------------------------------------------------------------- architecture adapter
def model_class(task_type):
    """The PaddleNLP class for a task type (one registration per architecture)."""
    from paddlenlp.transformers import BertForSequenceClassification, BertForTokenClassification
    if task_type == "token_classification":
        return BertForTokenClassification
    if task_type in TASK_TYPES:
        return BertForSequenceClassification
    raise ValueError(f"unknown task_type {task_type!r}")


def encoder_layers(model):
    """The list of transformer layers of a (super)model."""
    base = getattr(model, "bert", model)
    return base.encoder.layers


def suite_info(config):
    info = getattr(config, SUITE_KEY, None)
    return dict(info) if isinstance(info, dict) else {}


# --------------------------------------------------------------------------- pruned shapes
def apply_pruned_shapes(model, heads_per_layer=None, ffn_per_layer=None):
    """Resize attention and FFN of every layer in place to the given head
    counts and FFN sizes (head size unchanged).  Values are whatever the
    layers hold afterwards; callers load weights next."""
    import paddle.nn as nn
    layers = encoder_layers(model)
    n = len(layers)
    for name, vals in (("heads_per_layer", heads_per_layer), ("ffn_per_layer", ffn_per_layer)):
        if vals is not None and len(vals) != n:
            raise UserError(f"config {name} has {len(vals)} entries but the model has {n} layers")
    for i, layer in enumerate(layers):
        attn = layer.self_attn
        hidden = attn.q_proj.weight.shape[0]
        if heads_per_layer is not None:
            k = int(heads_per_layer[i])
            if k < 1:
                raise UserError(f"config heads_per_layer[{i}] = {k}: every layer needs at least one head")
            inner = k * attn.head_dim
            attn.q_proj = nn.Linear(hidden, inner)
            attn.k_proj = nn.Linear(hidden, inner)
            attn.v_proj = nn.Linear(hidden, inner)
            attn.out_proj = nn.Linear(inner, hidden)
            attn.num_heads = k
        if ffn_per_layer is not None:
            m = int(ffn_per_layer[i])
            if m < 1:
                raise UserError(f"config ffn_per_layer[{i}] = {m}: every layer needs at least one FFN neuron")
            layer.linear1 = nn.Linear(hidden, m)
            layer.linear2 = nn.Linear(m, hidden)
    return model


def layer_shapes(model):
    """(heads_per_layer, ffn_per_layer) as the model holds them."""
    heads, ffn = [], []
    for layer in encoder_layers(model):
        attn = layer.self_attn
        heads.append(int(attn.q_proj.weight.shape[1]) // int(attn.head_dim))
        ffn.append(int(layer.linear1.weight.shape[1]))
    return heads, ffn


# --------------------------------------------------------------------------- config and weights
def find_file(model_dir, names):
    for n in names:
        p = os.path.join(model_dir, n)
        if os.path.isfile(p):
            return p
    return None


def looks_like_path(name):
    return os.sep in name or name.startswith(".") or os.path.exists(name)


def raw_config(model_dir):
    """The model config of a directory as a dict (the older
    ``model_config.json`` layout flattened), None if it has none or it is
    unreadable (:func:`load_config` reports that)."""
    cfg_file = find_file(model_dir, CONFIG_FILES)
    try:
        with open(cfg_file, encoding="utf-8") as f:
            raw = json.load(f)
    except (TypeError, OSError, ValueError):
        return None
    if not isinstance(raw, dict):
        return None
    if "init_args" in raw:  # PaddleNLP's older model_config.json layout
        args = raw["init_args"][0] if raw["init_args"] and isinstance(raw["init_args"][0], dict) else raw
        raw = {k: v for k, v in args.items() if not k.startswith("init_")}
    return raw


def mark_run_finished(model_dir):
    """Record in ``model_dir``'s config.json that the run which saved it
    finished (see ``runs.run_state``)."""
    path = os.path.join(model_dir, "config.json")
    with open(path, encoding="utf-8") as f:
        cfg = json.load(f)
    run = (cfg.get(SUITE_KEY) or {}).get("run")
    if not isinstance(run, dict) or run.get("finished"):
        return
    run["finished"] = True
    write_json_atomic(path, cfg)


def warn_if_unfinished(path, info):
    run = info.get("run")
    if isinstance(run, dict) and run.get("finished") is False:
        logger.warning("%s was saved at step %s of %s by a run that did not finish (%s): it is not that run's "
                       "final result; finish the run with --resume first", path, run.get("step"),
                       run.get("total_steps"), run.get("output_dir"))


def load_config(model_dir, flag="--model_name_or_path"):
    from paddlenlp.transformers import BertConfig
    if not os.path.isdir(model_dir):
        raise UserError(f"{flag}: {model_dir} is not a directory")
    cfg_file = find_file(model_dir, CONFIG_FILES)
    if cfg_file is None:
        raise UserError(f"{flag}: {model_dir} has no config.json (a model directory needs its model config)")
    try:
        with open(cfg_file, encoding="utf-8") as f:
            json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{cfg_file}: not a readable JSON model config ({e})")
    raw = raw_config(model_dir)
    if raw is None:
        raise UserError(f"{cfg_file}: not a JSON object")
    model_type = raw.get("model_type", "bert")
    if model_type != "bert":
        raise UserError(f"{cfg_file}: model_type {model_type!r} is not supported (this suite handles BERT)")
    try:
        return BertConfig(**raw)
    except Exception as e:
        raise UserError(f"{cfg_file}: not a BERT config ({e})")


def read_state_dict(path):
    """{name: numpy array} of a weight file: safetensors, or a pickle-based
    ``.pdparams`` through the restricted unpickler (never ``paddle.load``)."""
    if not path.endswith(".safetensors"):
        from .safe_pickle import load_state_dict
        state = load_state_dict(path)
        bad = [k for k, v in state.items() if not isinstance(v, np.ndarray)]
        if bad:
            raise UserError(f"{path}: not model weights ({bad[0]!r} is no tensor)")
        return state
    try:
        from safetensors.numpy import load_file
        return dict(load_file(path))
    except Exception as e:
        raise UserError(f"{path}: cannot read model weights ({type(e).__name__}: {e})")


def write_state_dict(state, path):
    """Write {name: array or tensor} as safetensors (atomically)."""
    from safetensors.numpy import save_file
    arrays = {k: np.ascontiguousarray(v if isinstance(v, np.ndarray) else v.numpy()) for k, v in state.items()}
    with staged_file(path) as tmp:
        save_file(arrays, tmp)


def strict_load(model, state, source):
    """Load ``state`` into ``model``; every tensor must be used and fit.
    Returns the list of head parameters that were initialised instead."""
    model_sd = model.state_dict()
    prefix = getattr(model, "base_model_prefix", "bert") + "."
    if not any(k.startswith(prefix) for k in state) and any(k.startswith(prefix) for k in model_sd):
        state = {(k if k.startswith(HEAD_PREFIXES) else prefix + k): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith(IGNORABLE_PREFIXES)}
    unexpected = sorted(set(state) - set(model_sd))
    missing = sorted(set(model_sd) - set(state))
    has_head = any(k.startswith(HEAD_PREFIXES) for k in state)
    new_head = [k for k in missing if k.startswith(HEAD_PREFIXES)] if not has_head else []
    missing = [k for k in missing if k not in new_head]
    mismatched = [(k, list(np.shape(state[k])), list(model_sd[k].shape)) for k in sorted(set(state) & set(model_sd))
                  if list(np.shape(state[k])) != list(model_sd[k].shape)]
    problems = []
    if mismatched:
        k, a, b = mismatched[0]
        head = any(m[0].startswith(HEAD_PREFIXES) for m in mismatched)
        why = (" (a task head of another size: the checkpoint was fine-tuned for a different number of labels)"
               if head and len(mismatched) == sum(m[0].startswith(HEAD_PREFIXES) for m in mismatched) else
               " (a pruned checkpoint loaded into a full-size model, or a checkpoint of another model; "
               "pruned models record their shapes in config.json)")
        problems.append(f"{k} has shape {a} in the file but {b} in the model"
                        f"{'' if len(mismatched) == 1 else f', and {len(mismatched) - 1} more tensors differ'}{why}")
    if unexpected:
        problems.append(f"{len(unexpected)} tensors of the file have no place in the model (first: {unexpected[0]})")
    if missing:
        problems.append(f"{len(missing)} model parameters are not in the file (first: {missing[0]})")
    if problems:
        raise UserError(f"{source}: checkpoint does not fit the model: " + "; ".join(problems))
    state.update({k: model_sd[k] for k in new_head})  # keep the fresh head (and paddle quiet about it)
    model.set_state_dict(state)
    return new_head


def build_model(config, task_type):
    """An untrained model of the class and (pruned) shapes the config records."""
    info = suite_info(config)
    model = model_class(task_type)(config)
    if info.get("heads_per_layer") or info.get("ffn_per_layer"):
        apply_pruned_shapes(model, info.get("heads_per_layer"), info.get("ffn_per_layer"))
    return model


def load_tokenizer(path_or_name, config=None):
    """The model directory's tokenizer: a SentencePiece model
    (``sentencepiece.bpe.model``, e.g. the converted multilingual e5) or a
    WordPiece ``vocab.txt`` (BERT); a hub name goes to paddlenlp."""
    from paddlenlp.transformers import BertTokenizer
    if os.path.isdir(path_or_name):
        from .spm_tokenizer import MODEL_FILE, XlmrSpmTokenizer
        if os.path.isfile(os.path.join(path_or_name, MODEL_FILE)):
            return XlmrSpmTokenizer.from_pretrained(path_or_name)
        if os.path.isfile(os.path.join(path_or_name, "tokenizer_config.json")):
            return BertTokenizer.from_pretrained(path_or_name)
        vocab = os.path.join(path_or_name, "vocab.txt")
        if not os.path.isfile(vocab):
            raise UserError(f"--model_name_or_path: {path_or_name} has no vocab.txt (tokenizer files are needed)")
        lower = getattr(config, "do_lower_case", True) if config is not None else True
        return BertTokenizer(vocab, do_lower_case=lower)
    return BertTokenizer.from_pretrained(path_or_name)


def load_model(path_or_name, task_type=None, num_labels=None, flag="--model_name_or_path",
               expect_task_type=None, require_head=False, task_name=None, warn_unfinished=True):
    """Load a model for ``task_type`` with ``num_labels`` outputs.

    ``path_or_name`` is a local directory (strict load; a directory with only
    a config and a vocab starts from random initialisation, with a warning) or
    a PaddleNLP model name (downloaded by paddlenlp, online users only).
    ``task_type=None`` takes the type the saved model records.
    ``warn_unfinished``: warn if the model was saved by a run that did not finish.
    ``require_head``: the directory must hold a fine-tuned task head (a
    teacher for distillation); ``task_name``: if the saved model records the
    task it was fine-tuned on, it must be this one.
    Returns (model, tokenizer, config).
    """
    if not os.path.isdir(path_or_name):
        if looks_like_path(path_or_name):
            old = interrupted_publish(path_or_name.rstrip(os.sep))
            if old:   # publish_dir was killed between its two renames
                raise UserError(f"{flag}: {path_or_name} does not exist: a save into it was interrupted; the "
                                f"previous version is {old} (resume the run that wrote it, or move it back)")
            raise UserError(f"{flag}: {path_or_name} does not exist")
        if require_head:
            raise UserError(f"{flag}: {path_or_name} is a model name: a pre-trained encoder without a fine-tuned "
                            f"task head; fine-tune it first (run_glue.py / run_msra_ner.py) and pass that directory")
        return _load_by_name(path_or_name, task_type, num_labels)
    config = load_config(path_or_name, flag)
    info = suite_info(config)
    if warn_unfinished:
        warn_if_unfinished(path_or_name, info)
    saved_type = info.get("task_type")
    if task_type is None:
        task_type = saved_type or "classification"
    if expect_task_type and saved_type and saved_type != expect_task_type:
        raise UserError(f"{flag}: {path_or_name} holds a {saved_type} model, not a {expect_task_type} model")
    if task_name and info.get("task_name") and info["task_name"] != task_name:
        raise UserError(f"{flag}: {path_or_name} was fine-tuned on {info['task_name']}, not on {task_name}")
    if num_labels is not None:
        saved_labels = int(getattr(config, "num_labels", num_labels) or num_labels)
        if saved_type and saved_labels != num_labels:
            raise UserError(f"{flag}: {path_or_name} was fine-tuned with {saved_labels} output(s), "
                            f"this task needs {num_labels} (a model of another task?)")
        config.num_labels = num_labels
    model = build_model(config, task_type)
    weights = find_file(path_or_name, WEIGHT_FILES)
    tokenizer = load_tokenizer(path_or_name, config)
    if weights is None:
        if require_head:
            raise UserError(f"{flag}: {path_or_name} has no weights; a fine-tuned teacher is needed")
        logger.warning("%s has a config but no weights (%s): starting from RANDOM initialisation",
                       path_or_name, " / ".join(WEIGHT_FILES))
        return model, tokenizer, config
    new_head = strict_load(model, read_state_dict(weights), weights)
    if new_head and require_head:
        raise UserError(f"{flag}: {path_or_name} holds no fine-tuned task head (a pre-trained encoder?); "
                        f"fine-tune it first (run_glue.py / run_msra_ner.py)")
    if new_head:
        logger.info("%s holds an encoder without a task head: initialised %s", path_or_name, ", ".join(new_head))
    return model, tokenizer, config


def _load_by_name(name, task_type, num_labels):  # pragma: no cover - needs the model hub
    from paddlenlp.transformers import AutoConfig
    cls = model_class(task_type or "classification")
    kwargs = {} if num_labels is None else {"num_labels": num_labels}
    model = cls.from_pretrained(name, **kwargs)
    return model, load_tokenizer(name), AutoConfig.from_pretrained(name)


# --------------------------------------------------------------------------- saving
def save_model(model, tokenizer, out_dir, info=None):
    """Write ``model`` (+ tokenizer) in save_pretrained layout with the suite's
    ``info`` merged into config.json.  The directory is written beside its
    destination and swapped in with a rename, so a crash never leaves a
    half-written model under ``out_dir``."""
    import paddle
    model = model._layers if isinstance(model, paddle.DataParallel) else model
    config = model.config
    merged = suite_info(config)
    merged.update(info or {})
    heads, ffn = layer_shapes(model)
    full_heads, full_ffn = config.num_attention_heads, config.intermediate_size
    if any(h != full_heads for h in heads) or any(m != full_ffn for m in ffn):
        merged["heads_per_layer"], merged["ffn_per_layer"] = heads, ffn
    else:
        merged.pop("heads_per_layer", None)
        merged.pop("ffn_per_layer", None)
    setattr(config, SUITE_KEY, merged)
    with staging_dir(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        if "heads_per_layer" in merged:
            os.replace(os.path.join(tmp, SAFE_WEIGHTS), os.path.join(tmp, PRUNED_WEIGHTS))
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        publish_dir(tmp, out_dir)
    return out_dir
