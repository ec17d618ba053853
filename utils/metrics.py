"""GLUE and own-data metrics in plain numpy.

``compute_metrics(metric, preds, labels)`` takes the model outputs of a whole
split: logits ``[N, C]`` for classification (the argmax is taken; 1-D integer
class predictions are accepted too), scores ``[N]`` / ``[N, 1]`` for
regression, or logits ``[N, C]`` with multi-hot labels ``[N, C]`` for
multilabel (a label is predicted when its sigmoid probability is > 0.5).

=======================  ===========================================  ==============
metric                   keys                                         main key
=======================  ===========================================  ==============
acc                      acc                                          acc
mcc                      mcc (Matthews corr., multi-class form)       mcc
acc_and_f1               acc, f1 (of class 1), acc_and_f1 (mean)      acc_and_f1
pearson_and_spearman     pearson, spearman, corr (mean)               corr
acc_and_macro_f1         acc, macro_f1 (unweighted mean over classes) acc
multilabel               micro_f1, macro_f1 (over labels),            micro_f1
                         one_minus_mlogloss
=======================  ===========================================  ==============

Own data uses the last three (``tasks.OWN_DATA_METRICS``).  ``macro_f1``
averages the F1 of every class present in the labels or the predictions
(scikit-learn's ``f1_score(average="macro")``); for multilabel every label
column counts, a label neither present nor predicted scoring 0
(``zero_division=0``).  ``one_minus_mlogloss`` is 1 minus the mean binary
log-loss over labels and examples (probabilities clipped to
[1e-15, 1 - 1e-15]), the figure the upstream pruning example reports.

The main key (``MAIN_KEY``, ``main_score``) is the scalar used to pick the best
checkpoint.  For the two-metric tasks it is the mean of the two, which is how
the GLUE benchmark itself scores MRPC/QQP (F1 and accuracy) and STS-B (Pearson
and Spearman), so model selection optimises the number that is reported.

Degenerate inputs never crash: constant predictions or labels give mcc 0.0 and
pearson/spearman 0.0 (instead of nan); f1 is 0.0 when class 1 is neither
predicted nor present (scikit-learn's ``zero_division=0``).
"""
import numpy as np

MAIN_KEY = {
    "acc": "acc",
    "mcc": "mcc",
    "acc_and_f1": "acc_and_f1",
    "pearson_and_spearman": "corr",
    "acc_and_macro_f1": "acc",
    "multilabel": "micro_f1",
}
LOGLOSS_EPS = 1e-15


def _finite_or_zero(x) -> float:
    x = float(x)
    return x if np.isfinite(x) else 0.0


def _class_preds(preds):
    preds = np.asarray(preds)
    if preds.ndim == 2:
        return preds.argmax(axis=-1).astype(np.int64)
    if preds.ndim == 1:
        return preds.astype(np.int64)
    raise ValueError(f"classification predictions must be [N, C] logits or [N] classes, got shape {preds.shape}")


def _scores(preds):
    preds = np.asarray(preds, dtype=np.float64)
    if preds.ndim == 2 and preds.shape[1] == 1:
        preds = preds[:, 0]
    if preds.ndim != 1:
        raise ValueError(f"regression predictions must be [N] or [N, 1], got shape {preds.shape}")
    return preds


def accuracy(preds, labels) -> float:
    return float(np.mean(preds == labels))


def matthews_corrcoef(preds, labels) -> float:
    """Matthews correlation (Gorodkin's multi-class form, equal to the usual
    binary formula for two classes); 0.0 when undefined."""
    classes, inv = np.unique(np.concatenate([labels, preds]), return_inverse=True)
    k, n = len(classes), len(labels)
    conf = np.zeros((k, k), dtype=np.float64)
    np.add.at(conf, (inv[:n], inv[n:]), 1.0)
    t = conf.sum(axis=1)            # true counts per class
    p = conf.sum(axis=0)            # predicted counts per class
    c, s = np.trace(conf), float(n)
    cov_tp = c * s - t @ p
    cov_pp = s * s - p @ p
    cov_tt = s * s - t @ t
    denom = np.sqrt(cov_pp * cov_tt)
    return 0.0 if denom == 0 else _finite_or_zero(cov_tp / denom)


def f1_positive(preds, labels, positive=1) -> float:
    """F1 of the positive class; 0.0 when it is neither predicted nor present."""
    tp = float(np.sum((preds == positive) & (labels == positive)))
    fp = float(np.sum((preds == positive) & (labels != positive)))
    fn = float(np.sum((preds != positive) & (labels == positive)))
    denom = 2 * tp + fp + fn
    return 0.0 if denom == 0 else 2 * tp / denom


def macro_f1(preds, labels) -> float:
    """Unweighted mean F1 over the classes present in labels or predictions."""
    return float(np.mean([f1_positive(preds, labels, c) for c in np.union1d(preds, labels)]))


def sigmoid(x):
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))                      # stable for large |x|
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def multilabel_f1(hits, labels):
    """(micro F1, macro F1) of 0/1 predictions ``hits`` against multi-hot ``labels``, both [N, C]."""
    tp = (hits * labels).sum(axis=0)
    fp = (hits * (1 - labels)).sum(axis=0)
    fn = ((1 - hits) * labels).sum(axis=0)
    denom = 2 * tp + fp + fn
    micro = 0.0 if denom.sum() == 0 else 2 * tp.sum() / denom.sum()
    per_label = np.divide(2 * tp, denom, out=np.zeros_like(denom, dtype=np.float64), where=denom > 0)
    return float(micro), float(per_label.mean())


def mean_binary_logloss(probs, labels, eps=LOGLOSS_EPS) -> float:
    """Mean over examples and labels of the binary log-loss (= the mean over
    label columns of each column's log-loss)."""
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))


def pearson(x, y) -> float:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(x) < 2:
        return 0.0
    xc, yc = x - x.mean(), y - y.mean()
    denom = np.sqrt((xc @ xc) * (yc @ yc))
    if not np.isfinite(denom) or denom == 0:
        return 0.0
    return _finite_or_zero(np.clip((xc @ yc) / denom, -1.0, 1.0))


def average_ranks(x) -> np.ndarray:
    """1-based ranks, ties sharing the mean of their ranks (scipy's 'average')."""
    _, inv, counts = np.unique(np.asarray(x), return_inverse=True, return_counts=True)
    ends = np.cumsum(counts).astype(np.float64)          # last rank of each tie group
    return (ends - (counts - 1) / 2.0)[inv.reshape(-1)]


def spearman(x, y) -> float:
    return pearson(average_ranks(x), average_ranks(y))


def _acc(preds, labels):
    p = _class_preds(preds)
    return {"acc": accuracy(p, labels.astype(np.int64))}


def _mcc(preds, labels):
    p = _class_preds(preds)
    return {"mcc": matthews_corrcoef(p, labels.astype(np.int64))}


def _acc_and_f1(preds, labels):
    p, y = _class_preds(preds), labels.astype(np.int64)
    acc, f1 = accuracy(p, y), f1_positive(p, y)
    return {"acc": acc, "f1": f1, "acc_and_f1": (acc + f1) / 2.0}


def _pearson_and_spearman(preds, labels):
    p, y = _scores(preds), labels.astype(np.float64)
    pr, sr = pearson(p, y), spearman(p, y)
    return {"pearson": pr, "spearman": sr, "corr": (pr + sr) / 2.0}


def _acc_and_macro_f1(preds, labels):
    p, y = _class_preds(preds), labels.astype(np.int64)
    return {"acc": accuracy(p, y), "macro_f1": macro_f1(p, y)}


def _multilabel(preds, labels):
    logits = np.asarray(preds, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if logits.ndim != 2 or logits.shape != y.shape:
        raise ValueError(f"multilabel metrics need logits and multi-hot labels of the same [N, C] shape, "
                         f"got {logits.shape} and {y.shape}")
    probs = sigmoid(logits)
    micro, macro = multilabel_f1((probs > 0.5).astype(np.float64), y)
    return {"micro_f1": micro, "macro_f1": macro, "one_minus_mlogloss": 1.0 - mean_binary_logloss(probs, y)}


_METRICS = {
    "acc": _acc,
    "mcc": _mcc,
    "acc_and_f1": _acc_and_f1,
    "pearson_and_spearman": _pearson_and_spearman,
    "acc_and_macro_f1": _acc_and_macro_f1,
    "multilabel": _multilabel,
}


def compute_metrics(metric: str, preds, labels) -> dict:
    """Metric values (python floats) of a whole split; see the module docstring."""
    if metric not in _METRICS:
        raise ValueError(f"unknown metric '{metric}'; choose from {', '.join(_METRICS)}")
    labels = np.asarray(labels)
    if metric != "multilabel":          # multilabel labels are [N, C] multi-hot rows
        labels = labels.reshape(-1)
    n = np.asarray(preds).shape[0] if np.ndim(preds) else 0
    if len(labels) == 0:
        raise ValueError("compute_metrics: no examples")
    if n != len(labels):
        raise ValueError(f"compute_metrics: {n} predictions for {len(labels)} labels")
    return _METRICS[metric](preds, labels)


def main_score(metric: str, result: dict) -> float:
    """The scalar that selects the best model (``result[MAIN_KEY[metric]]``)."""
    if metric not in MAIN_KEY:
        raise ValueError(f"unknown metric '{metric}'; choose from {', '.join(MAIN_KEY)}")
    return float(result[MAIN_KEY[metric]])
