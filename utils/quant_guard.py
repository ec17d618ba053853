"""How closely an INT8 model follows its FP32 model, with uncertainty, and
the guard's verdict.

On 500 dev examples an accuracy difference has a standard error of about
one point, so a guard on the dev metric alone passes models that lose a
point (issue 19: +0.2 on dev, -1.15 on 2,000 test examples, with 5% of the
predictions flipped).  Agreement with the FP32 model's own predictions needs
no labels, so it can be measured on thousands of in-domain texts, and a 1%
flip rate is visible at n = 2,000 (95% interval about +-0.45 points).

The agreement measure follows the task:

* classification: share of examples whose argmax is unchanged (Wilson 95%
  interval);
* multilabel: share of examples whose predicted label set is unchanged;
* regression: Pearson correlation of the two models' scores (Fisher-z 95%
  interval), plus the largest absolute difference;
* token classification (NER): entity-level F1 of the INT8 entities against
  the FP32 entities (exact span and type; bootstrap 95% interval over
  sentences), plus the share of sentences whose entities are unchanged.

The metric drop (FP32 minus INT8, on labelled data) gets a paired bootstrap
interval over examples: both models are scored on the same resample.
"""
import math

import numpy as np

Z95 = 1.959964
BOOTSTRAP = 200


def wilson(k, n, z=Z95):
    """95% Wilson score interval of a proportion k/n."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, mid - half), min(1.0, mid + half))


def fisher_interval(r, n, z=Z95):
    """95% interval of a Pearson correlation r over n pairs (Fisher z)."""
    if n <= 3 or not np.isfinite(r):
        return (-1.0, 1.0)
    r = float(np.clip(r, -0.999999, 0.999999))
    h = z / math.sqrt(n - 3)
    return (math.tanh(math.atanh(r) - h), math.tanh(math.atanh(r) + h))


def entities(tags):
    """Set of (type, start, end) chunks of one BIO tag sequence (an I- tag
    without a matching B- starts a chunk, as CoNLL's evaluation does)."""
    out, start, kind = set(), None, None
    for i, t in enumerate(list(tags) + ["O"]):
        inside = t.startswith("I-") and kind == t[2:]
        if start is not None and not inside:
            out.add((kind, start, i))
            start, kind = None, None
        if t != "O" and not inside:
            start, kind = i, t[2:]
    return out


def _ner_counts(ref, new, label_list):
    """Per sentence: (entities in both, FP32 entities, INT8 entities)."""
    rows = []
    for a, b in zip(ref, new):
        ea = entities([label_list[i] for i in a])
        eb = entities([label_list[i] if 0 <= i < len(label_list) else "O" for i in b])
        rows.append((len(ea & eb), len(ea), len(eb)))
    return np.asarray(rows, dtype=np.float64).reshape(-1, 3)


def _f1(counts):
    tot = counts[..., 1] + counts[..., 2]
    return np.where(tot > 0, 2 * counts[..., 0] / np.maximum(tot, 1), 1.0)


def agreement(kind, ref, new, label_list=None, seed=0):
    """Agreement of ``new`` (INT8) with ``ref`` (FP32) outputs, one entry per
    example: logit rows (classification, multilabel), scores (regression) or
    tag-id arrays of the labelled positions (token classification).
    Returns ``{"measure", "value", "ci95", "examples", ...}``."""
    n = len(ref)
    if kind == "regression":
        a = np.asarray(ref, dtype=np.float64).reshape(-1)
        b = np.asarray(new, dtype=np.float64).reshape(-1)
        r = float(np.corrcoef(a, b)[0, 1]) if n > 1 and a.std() > 0 and b.std() > 0 else float("nan")
        return {"measure": "pearson", "value": r, "ci95": list(fisher_interval(r, n)), "examples": n,
                "max_abs_diff": float(np.abs(a - b).max()) if n else 0.0}
    if kind == "token_classification":
        counts = _ner_counts(ref, new, label_list)
        f1 = float(_f1(counts.sum(0)))
        idx = np.random.RandomState(seed).randint(0, n, size=(BOOTSTRAP, n)) if n else np.zeros((0, 0), int)
        boot = _f1(counts[idx].sum(1)) if n else np.array([f1])
        same = int(sum(c[0] == c[1] == c[2] for c in counts))
        return {"measure": "entity_f1", "value": f1, "ci95": [float(np.percentile(boot, 2.5)),
                                                              float(np.percentile(boot, 97.5))],
                "examples": n, "entities_fp32": int(counts[:, 1].sum()), "sentences_unchanged": same / max(n, 1)}
    if kind == "multilabel":
        same = [np.array_equal(np.asarray(x) > 0, np.asarray(y) > 0) for x, y in zip(ref, new)]
    else:
        same = [int(np.argmax(x)) == int(np.argmax(y)) for x, y in zip(ref, new)]
    k = int(sum(same))
    return {"measure": "prediction_agreement", "value": k / n if n else 1.0, "ci95": list(wilson(k, n)),
            "examples": n, "flips": n - k}


def metric_drop(score, ref_logits, new_logits, labels, seed=0):
    """FP32 minus INT8 of ``score(logits, labels) -> float`` on the same
    examples, with a paired bootstrap 95% interval and standard error."""
    base = score(ref_logits, labels) - score(new_logits, labels)
    n = len(labels)
    rng = np.random.RandomState(seed)
    diffs = []
    for _ in range(BOOTSTRAP if n > 1 else 0):
        i = rng.randint(0, n, size=n)
        diffs.append(score(ref_logits[i], labels[i]) - score(new_logits[i], labels[i]))
    diffs = np.asarray(diffs) if diffs else np.array([base])
    return {"drop": float(base), "se": float(diffs.std()),
            "ci95": [float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))], "examples": n}


def verdict(agree, drop, min_agreement, max_drop):
    """Reasons to refuse (empty: the INT8 model passes)."""
    reasons = []
    if not agree["value"] >= min_agreement:   # NaN (constant outputs) refuses too
        reasons.append(f"{agree['measure']} {agree['value']:.4f} on {agree['examples']} examples is below "
                       f"--min_agreement {min_agreement:g}")
    if drop is not None and drop["drop"] > max_drop:
        reasons.append(f"dev metric drop {drop['drop']:.4f} (95% interval {drop['ci95'][0]:+.4f} .. "
                       f"{drop['ci95'][1]:+.4f}) exceeds --max_drop {max_drop:g}")
    return reasons


def divergence(kind, ref, new):
    """Mean size of the change of the outputs (ties of the flip counts are
    broken by it): L1 distance of the class probabilities (classification),
    |difference| of scores (regression) or of sigmoid probabilities
    (multilabel), share of changed tags (token classification)."""
    if not len(ref):
        return 0.0
    if kind == "token_classification":
        return float(np.mean([np.mean(a != b) if len(a) else 0.0 for a, b in zip(ref, new)]))
    a, b = np.asarray(ref, dtype=np.float64), np.asarray(new, dtype=np.float64)
    if kind == "regression":
        return float(np.mean(np.abs(a - b)))
    if kind == "multilabel":
        return float(np.mean(np.abs(1 / (1 + np.exp(-a)) - 1 / (1 + np.exp(-b)))))
    pa = np.exp(a - a.max(-1, keepdims=True))
    pb = np.exp(b - b.max(-1, keepdims=True))
    return float(np.mean(np.abs(pa / pa.sum(-1, keepdims=True) - pb / pb.sum(-1, keepdims=True)).sum(-1)))
