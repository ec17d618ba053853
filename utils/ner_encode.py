"""NER encoding: each character's word pieces, windows over long sentences,
features with labels on the first piece, and the padded batch.

Every character is tokenized on its own with the model's tokenizer (so
lower-casing, accent stripping and unknown characters behave as the tokenizer
does); its label goes on its first piece, -100 on its other pieces, on the
tokenizer's start/end tokens ([CLS]/[SEP] or <s>/</s>) and on padding.  A
character that yields no piece at all (spaces, zero-width and control
characters) is kept as one unknown-token position, so every character has
exactly one labelled position and labels never shift.

SentencePiece (XLM-R) marks a word start with "▁": tokenized alone, a
character becomes "▁" + the character, or a lone "▁" piece followed by the
character's pieces.  Inside a sentence no character starts a word, so the
character's own piece is taken when the vocabulary holds it, else its pieces
with a bare "▁" dropped, else the unknown token (measured on Chinese: without
this a sentence doubled in length and every label sat on a "▁").  WordPiece
tokenizers are used as they tokenize.

Sentences longer than ``max_seq_length - 2`` pieces are truncated (one log
line with the count; the cut-off tail is then neither trained nor evaluated)
or, with ``split_long``, split into several examples, preferably between
entities (an entity cut anyway restarts with B- in the next piece).

Public API::

    encode_ner(examples, tokenizer, max_seq_length, label_list, split_long=False, name="") -> features
    collate_ner(features, pad_token_id) -> (input_ids, token_type_ids, labels)
    NerBatcher(pad_token_id)
"""
import logging

from .batching import is_sentencepiece, pad_features, pad_rows
from .errors import UserError
from .losses import IGNORE_INDEX as IGNORE   # positions without a tag

logger = logging.getLogger("bert_suite")


SPM_SPACE = "\u2581"   # SentencePiece's word-start mark "▁"


def char_piece_ids(tokenizer, ch):
    """Ids of the pieces of one character inside a sentence (never empty:
    the unknown token for a character without a piece).  WordPiece: as the
    tokenizer tokenizes it alone.  SentencePiece: the character's own piece
    when the vocabulary holds it, else its pieces without a bare word-start
    "▁", else unknown (see the module docstring)."""
    unk = tokenizer.unk_token_id
    pieces = tokenizer.tokenize(ch)
    if is_sentencepiece(tokenizer):
        own = tokenizer.convert_tokens_to_ids(ch)
        if own is not None and own != unk:
            return [own]
        pieces = [x for x in pieces if x != SPM_SPACE]
    return list(tokenizer.convert_tokens_to_ids(pieces)) if pieces else [unk]


def _piece_ids(tokenizer):
    """:func:`char_piece_ids` cached per tokenizer."""
    cache = getattr(tokenizer, "_ner_piece_cache", None)
    if cache is None:
        cache = {}
        try:
            tokenizer._ner_piece_cache = cache
        except Exception:  # pragma: no cover - a tokenizer refusing attributes
            pass

    def ids(ch):
        got = cache.get(ch)
        if got is None:
            got = cache[ch] = char_piece_ids(tokenizer, ch)
        return got
    return ids


def _windows(lengths, tags, budget, split):
    """Character ranges [(start, end)] of the examples of one sentence."""
    n = len(lengths)
    if n == 0:
        return [(0, 0)]
    out, s = [], 0
    while s < n:
        total, e = 0, s
        while e < n and total + lengths[e] <= budget:
            total += lengths[e]
            e += 1
        if not split:
            return [(s, e)]
        if e < n and tags is not None:  # cut between entities if possible
            for j in range(e, s, -1):
                if not tags[j].startswith("I-"):
                    e = j
                    break
        out.append((s, e))
        s = e
    return out


def encode_ner(examples, tokenizer, max_seq_length, label_list=None, split_long=False, name=""):
    """Examples -> features ``{"input_ids", "token_type_ids", "labels",
    "sentence", "char_start", "first_token"}``: ``labels`` holds the label
    index on each character's first piece and -100 elsewhere (None when
    unlabelled); ``first_token[k]`` is the position of character
    ``char_start + k`` of sentence ``sentence``."""
    max_seq_length = int(max_seq_length)
    if max_seq_length < 3:
        raise UserError(f"--max_seq_length must be at least 3, got {max_seq_length}")
    budget = max_seq_length - 2
    to_id = {l: i for i, l in enumerate(label_list)} if label_list is not None else None
    piece_ids = _piece_ids(tokenizer)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    feats, long_sentences = [], 0
    for si, ex in enumerate(examples):
        labelled = ex.tags is not None
        if labelled and to_id is None:
            raise ValueError("encode_ner: labelled examples need a label_list")
        if labelled and len(ex.tags) != len(ex.chars):
            raise UserError(f"{ex.where}: {len(ex.chars)} characters but {len(ex.tags)} tags")
        pieces = [piece_ids(c)[:budget] for c in ex.chars]
        windows = _windows([len(p) for p in pieces], ex.tags, budget, split_long)
        if windows[-1][1] < len(ex.chars) or len(windows) > 1:
            long_sentences += 1
        for s, e in windows:
            ids, labels, first = [cls], [IGNORE], []
            for j in range(s, e):
                first.append(len(ids))
                ids.extend(pieces[j])
                if labelled:
                    tag = ex.tags[j]
                    if j == s and s > 0 and tag.startswith("I-") and "B-" + tag[2:] in to_id:
                        tag = "B-" + tag[2:]  # an entity cut by a split restarts here
                    if tag not in to_id:
                        raise UserError(f"{ex.where}: tag {tag!r} is not in the label list ({', '.join(to_id)})")
                    labels.append(to_id[tag])
                    labels.extend([IGNORE] * (len(pieces[j]) - 1))
            ids.append(sep)
            labels.append(IGNORE)
            feats.append({"input_ids": ids, "token_type_ids": [0] * len(ids),
                          "labels": labels if labelled else None,
                          "sentence": si, "char_start": s, "first_token": first})
    if long_sentences:
        where = f"{name}: " if name else ""
        if split_long:
            logger.info("%s%d of %d sentences are longer than --max_seq_length %d (%d pieces + start/end tokens): "
                        "split, %d examples in all", where, long_sentences, len(examples), max_seq_length,
                        budget, len(feats))
        else:
            logger.warning("%s%d of %d sentences are longer than --max_seq_length %d (%d pieces + start/end tokens) "
                           "and were truncated: their tails are neither trained nor evaluated "
                           "(--split_long splits them instead)", where, long_sentences, len(examples),
                           max_seq_length, budget)
    return feats


def collate_ner(features, pad_token_id):
    """Pad a batch to its longest sequence with the tokenizer's
    ``pad_token_id``: (input_ids int64 [B, T], token_type_ids int64 [B, T],
    labels int64 [B, T] padded with -100, or None when the batch is
    unlabelled)."""
    if not features:
        raise ValueError("collate_ner: empty batch")
    labelled = [f.get("labels") is not None for f in features]
    if any(labelled) and not all(labelled):
        raise ValueError("collate_ner: batch mixes labelled and unlabelled features")
    ids, types = pad_features(features, pad_token_id)
    labels = pad_rows([f["labels"] for f in features], IGNORE) if all(labelled) else None
    return ids, types, labels


class NerBatcher:
    """:func:`collate_ner` bound to a pad id (picklable, usable as a collate_fn)."""

    def __init__(self, pad_token_id):
        self.pad_token_id = pad_token_id

    def __call__(self, features):
        return collate_ner(features, self.pad_token_id)
