"""NER scoring and output: tag sequences, entity-level metrics (seqeval,
CoNLL-style chunks), evaluation over feature sets, entity spans and
prediction of raw sentences.

Public API::

    tag_sequences(preds, labels, label_list) -> (gold, predicted)
    ner_metrics(preds, labels, label_list) / evaluate_ner(forward, dev_sets, collate, label_list, batch_size)
    tags_to_spans(chars, tags) -> [{"text", "type", "start", "end"}]
    predict_tags(run, tokenizer, sentences, label_list, max_seq_length) / predict_lines_batch(...)
    record_test(model_dir, feats, label_list, metrics) / recorded_test(model_dir, feats, label_list)
"""
import json
import os
import warnings

import numpy as np

from .losses import IGNORE_INDEX as IGNORE   # positions without a tag
from .ner_data import BIO_PREFIX, TAG_PATTERN, NerExample
from .ner_encode import collate_ner, encode_ner


def _as_preds(preds):
    preds = np.asarray(preds)
    return preds.argmax(-1) if preds.ndim == 3 else preds


def tag_sequences(preds, labels, label_list):
    """(gold, predicted) tag sequences of every example, over the labelled
    positions only."""
    preds, labels = _as_preds(preds), np.asarray(labels)
    if preds.shape != labels.shape:
        raise ValueError(f"predictions {preds.shape} and labels {labels.shape} differ in shape")
    gold, pred = [], []
    for p_row, l_row in zip(preds, labels):
        keep = l_row != IGNORE
        gold.append([label_list[i] for i in l_row[keep]])
        pred.append([label_list[i] if 0 <= i < len(label_list) else "O" for i in p_row[keep]])
    return gold, pred


def ner_metrics(preds, labels, label_list):
    """Entity-level precision / recall / F1 (seqeval, CoNLL-style chunks) of
    predictions (logits [N, T, C] or label indices [N, T]) against labels
    [N, T] (-100 positions ignored)."""
    from seqeval.metrics import f1_score, precision_score, recall_score
    gold, pred = tag_sequences(preds, labels, label_list)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # UndefinedMetricWarning when nothing is predicted
        return {"precision": float(precision_score(gold, pred)), "recall": float(recall_score(gold, pred)),
                "f1": float(f1_score(gold, pred))}


def evaluate_ner(forward, dev_sets, collate, label_list, batch_size):
    """Evaluate ``forward(input_ids, token_type_ids) -> logits`` on every
    split of ``dev_sets``; returns (results, F1 of the first split)."""
    from .evaluation import predict
    results = {}
    for split, feats in dev_sets.items():
        logits, labels = predict(forward, feats, collate, batch_size)
        results[split] = ner_metrics(logits, labels, label_list)
    return results, results[next(iter(dev_sets))]["f1"]


# --------------------------------------------------------------------------- prediction output
def tags_to_spans(chars, tags):
    """Entities of one sentence: ``[{"text", "type", "start", "end"}]`` with
    character offsets, ``end`` exclusive (``text == "".join(chars[start:end])``).
    B-X (or S-X) starts an entity; I-X (M-X, E-X) continues an entity of type
    X and otherwise starts one (as seqeval reads it); O ends it."""
    spans, cur = [], None

    def close(end):
        if cur is not None:
            spans.append({"text": "".join(chars[cur[1]:end]), "type": cur[0], "start": cur[1], "end": end})

    for i, tag in enumerate(tags):
        m = TAG_PATTERN.match(tag) if tag != "O" else None
        if m is None:
            close(i)
            cur = None
            continue
        kind, typ = BIO_PREFIX[m.group(1)], m.group(2)
        if kind == "B" or cur is None or cur[0] != typ:
            close(i)
            cur = (typ, i)
    close(len(tags))
    return spans


def predict_tags(run, tokenizer, sentences, label_list, max_seq_length, batch_size=32):
    """Tag every character of ``sentences`` (lists of characters) with
    ``run(input_ids, token_type_ids) -> logits`` (numpy in, numpy out).
    Long sentences are split, so every character gets a tag."""
    examples = [NerExample(list(s), None) for s in sentences]
    feats = encode_ner(examples, tokenizer, max_seq_length, split_long=True, name="predict")
    out = [[None] * len(s) for s in sentences]
    for i in range(0, len(feats), batch_size):
        chunk = feats[i:i + batch_size]
        ids, seg, _ = collate_ner(chunk, tokenizer.pad_token_id)
        pred = np.asarray(run(ids, seg)).argmax(-1)
        for row, f in zip(pred, chunk):
            for k, pos in enumerate(f["first_token"]):
                out[f["sentence"]][f["char_start"] + k] = label_list[int(row[pos])]
    return out


def predict_lines_batch(predictor, tokenizer, lines, label_list, max_seq_length):
    """predict.py: entities of raw text lines with a Paddle Inference
    predictor; one ``{"text", "entities"}`` dict a line (offsets into the line)."""
    from .inference import run_predictor
    tags = predict_tags(lambda ids, seg: run_predictor(predictor, ids, seg), tokenizer, [list(t) for t in lines],
                        label_list, max_seq_length, batch_size=max(1, len(lines)))
    return [{"text": line, "entities": tags_to_spans(list(line), t)} for line, t in zip(lines, tags)]


# --------------------------------------------------------------------------- a model's recorded test score
TEST_RECORD = "test_results.json"


def _digest_features(feats, label_list):
    """sha256 of everything an entity-F1 evaluation of ``feats`` depends on:
    the label names and each window's pieces, labels and place in its sentence."""
    import hashlib
    h = hashlib.sha256(json.dumps(list(label_list)).encode())
    for f in feats:
        h.update(json.dumps([f["input_ids"], f["labels"], f["sentence"], f["char_start"],
                             f["first_token"]]).encode())
    return h.hexdigest()


def _digest_weights(model_dir):
    import hashlib
    from .modeling import WEIGHT_FILES, find_file
    path = find_file(model_dir, WEIGHT_FILES)
    if path is None:
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def record_test(model_dir, feats, label_list, metrics):
    """Write ``model_dir/test_results.json``: the test ``metrics`` of the
    model in ``model_dir`` with digests of its weights and of the test
    windows, so a later stage scoring the same model on the same windows can
    take them instead of scoring again (:func:`recorded_test`)."""
    from .publish import write_json_atomic
    write_json_atomic(os.path.join(model_dir, TEST_RECORD),
                      {"test": metrics, "windows": len(feats), "features_sha256": _digest_features(feats, label_list),
                       "weights_sha256": _digest_weights(model_dir)})


def recorded_test(model_dir, feats, label_list):
    """The test metrics :func:`record_test` wrote for this model's weights
    and exactly these windows (same pieces, labels and label names), else
    None (no record, another model or other test data: score it)."""
    path = os.path.join(model_dir, TEST_RECORD)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            rec = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or not isinstance(rec.get("test"), dict) or rec.get("windows") != len(feats):
        return None
    if rec.get("weights_sha256") != _digest_weights(model_dir) or \
            rec.get("features_sha256") != _digest_features(feats, label_list):
        return None
    return rec["test"]
