"""Vocabulary pruning of a BERT classifier (TextPruner's vocabulary step,
written anew for the suite's PaddleNLP models).

Tokens occurring ``>= min_count`` times in the given texts (tokenised by the
model's own tokenizer), plus every special token and every token a config
``*_token_id`` names, keep their rows of the word-embedding table, in their
original order; ``vocab.txt``, ``vocab_size`` and ``pad_token_id`` (and any
other ``*_token_id``) follow.  Nothing else is re-mapped: BERT classifiers
have no other vocabulary-sized tensor.  Text made only of kept tokens
tokenises to the same tokens, so the pruned model's outputs are unchanged.

Works for the WordPiece tokenizer (vocab.txt rewritten and reloaded) and for
the XLM-R SentencePiece tokenizer of utils/spm_tokenizer.py (which rebuilds
its own model through ``tokenizer.pruned(kept)``).
"""
import os

import numpy as np

from .errors import UserError
from .pruning import _np, _set

ALWAYS_KEEP = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def read_texts(paths, column=None, flag="--vocab_texts"):
    """Lines of the text files (``column``: 1-based TAB-separated column)."""
    texts = []
    for path in paths:
        if not os.path.isfile(path):
            raise UserError(f"{flag}: {path} does not exist")
        n = 0
        with open(path, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
                try:
                    line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8").rstrip("\r\n")
                except UnicodeDecodeError as e:
                    raise UserError(f"{path}:{lineno}: not UTF-8 text ({e.reason})") from None
                if not line.strip():
                    continue
                if column is not None:
                    fields = line.split("\t")
                    if len(fields) < column:
                        raise UserError(f"{path}:{lineno}: has {len(fields)} tab-separated column(s), "
                                        f"--vocab_text_column is {column}")
                    line = fields[column - 1]
                texts.append(line)
                n += 1
        if n == 0:
            raise UserError(f"{flag}: {path} holds no text")
    return texts


def count_tokens(tokenizer, texts):
    """{token: occurrences} of the texts tokenised by ``tokenizer``."""
    counts = {}
    for t in texts:
        for tok in tokenizer.tokenize(t):
            counts[tok] = counts.get(tok, 0) + 1
    return counts


def _token_id_fields(config):
    d = config.to_dict() if hasattr(config, "to_dict") else dict(vars(config))
    return {k: v for k, v in d.items() if k.endswith("_token_id") and isinstance(v, int)
            and not isinstance(v, bool)}


def vocabulary_plan(tokenizer, config, counts, min_count):
    """(kept old ids sorted, reasons) for pruning the vocabulary."""
    vocab = tokenizer.vocab
    size = len(vocab.idx_to_token)
    table = int(config.vocab_size)
    if size > table:
        raise UserError(f"the tokenizer has {size} tokens but the word-embedding table only {table} rows")
    if set(vocab.idx_to_token) != set(range(size)):
        raise UserError("vocab.txt maps its tokens to non-contiguous ids (duplicate lines?): cannot prune it")
    if getattr(tokenizer, "added_tokens_encoder", None):
        raise UserError("the tokenizer has added tokens (added_tokens.json); vocabulary pruning does not "
                        "support them")
    to_id = vocab.token_to_idx
    keep = {to_id[t] for t, c in counts.items() if c >= min_count and t in to_id}
    specials = set(getattr(tokenizer, "all_special_tokens", [])) | set(ALWAYS_KEEP)
    keep |= {to_id[t] for t in specials if t in to_id}
    keep |= {v for v in _token_id_fields(config).values() if 0 <= v < size}
    return sorted(keep)


def prune_vocabulary(model, tokenizer, kept, work_dir):
    """Shrink the word embeddings of ``model`` (in place) to the ``kept`` old
    ids, update its config (``vocab_size``, ``pad_token_id`` and any other
    ``*_token_id``) and return (the matching tokenizer, written to
    ``work_dir`` and reloaded from there; old->new id map; changed ids)."""
    import paddle
    import paddle.nn as nn
    kept = np.asarray(kept, dtype=np.int64)
    remap = {int(o): i for i, o in enumerate(kept)}
    bert = model.bert
    old = bert.embeddings.word_embeddings
    table = _np(old.weight)[kept]
    rng = paddle.get_rng_state()
    try:
        new = nn.Embedding(len(kept), table.shape[1])
    finally:
        paddle.set_rng_state(rng)
    _set(new.weight, table)
    bert.embeddings.word_embeddings = new
    changed = {}
    configs = [model.config] + ([bert.config] if getattr(bert, "config", model.config) is not model.config else [])
    for key, v in _token_id_fields(model.config).items():
        if v in remap and remap[v] != v:
            changed[key] = [v, remap[v]]
    for cfg in configs:
        cfg.vocab_size = int(len(kept))
        for key, (_, v) in changed.items():
            setattr(cfg, key, v)
    bert.pad_token_id = model.config.pad_token_id
    config = model.config

    os.makedirs(work_dir, exist_ok=True)
    if hasattr(tokenizer, "pruned"):   # SentencePiece (utils/spm_tokenizer.py) rebuilds its own model
        new_tok = tokenizer.pruned(kept)
        new_tok.save_pretrained(work_dir)
        return new_tok, remap, changed
    # The WordPiece tokenizer: its own files with vocab.txt replaced, reloaded.
    tokenizer.save_pretrained(work_dir)
    tokens = [tokenizer.vocab.idx_to_token[int(i)] for i in kept]
    with open(os.path.join(work_dir, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("".join(t + "\n" for t in tokens))
    new_tok = type(tokenizer).from_pretrained(work_dir)
    if [new_tok.vocab.token_to_idx[t] for t in tokens] != list(range(len(tokens))):
        raise RuntimeError("the pruned vocab.txt does not reload with contiguous ids")
    if new_tok.pad_token_id != config.pad_token_id:
        raise RuntimeError(f"pad id {new_tok.pad_token_id} of the tokenizer != config pad_token_id "
                           f"{config.pad_token_id}")
    return new_tok, remap, changed

