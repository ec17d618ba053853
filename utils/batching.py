"""Tokenize and pad: the one place texts become padded id batches.

Used by GLUE encoding/collation (utils/data.py), NER collation
(utils/ner_encode.py), the export checks (export_model.py, export_onnx.py)
and predict.py.

Padding is the TOKENIZER'S pad id (BERT WordPiece: 0; XLM-R SentencePiece:
1), never an assumed 0; token types pad with 0.  The models build their
attention mask from the pad id their config records (utils/e5s1.py writes 1
for the converted E5), so the two must agree.  No module here imports paddle.
"""
import warnings

import numpy as np


def is_sentencepiece(tokenizer):
    """True for a SentencePiece tokenizer (utils/spm_tokenizer.py's, or one
    holding an ``sp_model`` as paddlenlp's and Hugging Face's do)."""
    return getattr(tokenizer, "sp", None) is not None or getattr(tokenizer, "sp_model", None) is not None


def pad_rows(rows, pad_value, dtype=np.int64):
    """Ragged rows -> ``[B, T]`` array, each row padded at the end with
    ``pad_value`` to the longest."""
    if not rows:
        raise ValueError("pad_rows: empty batch")
    width = max(len(r) for r in rows)
    out = np.full((len(rows), width), pad_value, dtype=dtype)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


def pad_features(features, pad_token_id):
    """(input_ids, token_type_ids) int64 ``[B, T]`` of feature dicts holding
    ``input_ids`` and ``token_type_ids``."""
    return (pad_rows([f["input_ids"] for f in features], pad_token_id),
            pad_rows([f["token_type_ids"] for f in features], 0))


def encode_pair(tokenizer, text_a, text_b, max_length):
    """``{"input_ids", "token_type_ids"}`` of one example as the tokenizer
    frames it (BERT: [CLS] a [SEP] (b [SEP]); XLM-R: <s> a </s>(</s> b </s>)),
    truncated to ``max_length``, unpadded.  A list ``text_a`` is a
    pre-split sentence (each word tokenized on its own)."""
    with warnings.catch_warnings():
        # paddlenlp warns on every truncated pair that overflowing tokens are not
        # returned; we never ask for them.
        warnings.filterwarnings("ignore", message=".*overflowing tokens are not returned.*")
        enc = tokenizer(text_a, text_pair=text_b, max_length=int(max_length), truncation=True,
                        return_token_type_ids=True, is_split_into_words=isinstance(text_a, list))
    return {"input_ids": list(enc["input_ids"]), "token_type_ids": list(enc["token_type_ids"])}


def text_batches(tokenizer, texts, max_length, batch_size=16):
    """``[(input_ids, token_type_ids)]`` padded batches of ``(text_a, text_b)``
    pairs, in order."""
    batches = []
    for k in range(0, len(texts), batch_size):
        feats = [encode_pair(tokenizer, a, b, max_length) for a, b in texts[k:k + batch_size]]
        batches.append(pad_features(feats, tokenizer.pad_token_id))
    return batches
