"""Reading a Hugging Face BERT directory without torch: config.json, the
weights (model.safetensors, a sharded index, or a TorchScript ``model.pt``
read by utils/torchscript.py's restricted unpickler), the tokenizer options,
and the check that config.json describes a BERT PaddleNLP can build
(:func:`paddle_config_fields`).  No paddle here; utils/convert.py maps the
tensors and writes the PaddleNLP directory.
"""
import json
import os
import re

from .errors import UserError
from .jsonfile import read_json

MODEL_CLASSES = {
    "bert": "BertModel",
    "sequence_classification": "BertForSequenceClassification",
    "token_classification": "BertForTokenClassification",
}
TORCHSCRIPT_FILE = "model.pt"
SUPPORTED_ACTS = {"gelu", "relu"}  # HF "gelu" is the exact erf GELU, as is paddle's F.gelu
NOT_READ_HERE = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack")


# ------------------------------------------------------------------- reading

def check_hf_dir(input_dir):
    """The weight files of a HF BERT directory: (model.safetensors, its index,
    the TorchScript archive) paths; UserError naming what is missing."""
    if not os.path.isdir(input_dir):
        raise UserError(f"--input_dir {input_dir}: no such directory")
    if not os.path.isfile(os.path.join(input_dir, "config.json")):
        raise UserError(f"--input_dir {input_dir} has no config.json (not a Hugging Face model directory)")
    files = [os.path.join(input_dir, n) for n in ("model.safetensors", "model.safetensors.index.json",
                                                   TORCHSCRIPT_FILE)]
    if not any(os.path.isfile(f) for f in files):
        torch_files = [f for f in NOT_READ_HERE if os.path.isfile(os.path.join(input_dir, f))]
        if torch_files:
            raise UserError(f"--input_dir {input_dir} has {torch_files[0]} but no model.safetensors: torch/tf "
                            "checkpoints are not read here (no torch); save the model with safetensors first "
                            "(transformers: model.save_pretrained(dir, safe_serialization=True))")
        raise UserError(f"--input_dir {input_dir} has no model.safetensors (nor a TorchScript {TORCHSCRIPT_FILE})")
    if not os.path.isfile(os.path.join(input_dir, "vocab.txt")):
        raise UserError(f"--input_dir {input_dir} has no vocab.txt (a WordPiece vocabulary is needed for the tokenizer)")
    return files


def _load_safetensors(path):
    from safetensors.numpy import load_file
    try:
        return load_file(path)
    except Exception as e:  # corrupt file, unsupported dtype (bf16 has no numpy type), ...
        raise UserError(f"{path}: cannot read safetensors file ({type(e).__name__}: {e})")


def _load_shards(input_dir, index):
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
        tensors.update(_load_safetensors(path))
    return tensors


def read_hf_dir(input_dir):
    """Return (hf_config dict, {name: ndarray}, weight file, names of the
    non-encoder tensors of a TorchScript model, which are not converted).
    Checks the directory layout before anything heavy is imported."""
    single, index, scripted = check_hf_dir(input_dir)
    hf_cfg = read_json(os.path.join(input_dir, "config.json"), want_object=True)
    if os.path.isfile(single):
        return hf_cfg, _load_safetensors(single), single, []
    if os.path.isfile(index):
        return hf_cfg, _load_shards(input_dir, index), index, []
    from . import torchscript
    tensors, others, _ = torchscript.encoder_tensors(torchscript.load_tensors(scripted), scripted)
    return hf_cfg, tensors, scripted, others


def read_tokenizer_options(input_dir, vocab_path):
    """do_lower_case and friends from tokenizer_config.json / tokenizer.json,
    else guessed from the vocabulary (no cased word pieces -> lower-case)."""
    opts, source = {}, None
    tc = os.path.join(input_dir, "tokenizer_config.json")
    if os.path.isfile(tc):
        data = read_json(tc, want_object=True)
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


