"""GLUE and own-data metrics: thin wrappers over scikit-learn and scipy.

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
import warnings

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
    """scikit-learn and scipy return nan (with a warning) where a correlation
    is undefined; the suite reports 0.0 so that model selection never sees nan."""
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


def sigmoid(x):
    from scipy.special import expit
    return expit(np.asarray(x, dtype=np.float64))


def _correlation(fn, x, y) -> float:
    """pearson/spearman of scipy, 0.0 where undefined (fewer than 2 points,
    a constant side, nan)."""
    if len(x) < 2:
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _finite_or_zero(fn(x, y)[0])


def _acc(preds, labels):
    from sklearn.metrics import accuracy_score
    return {"acc": float(accuracy_score(labels.astype(np.int64), _class_preds(preds)))}


def _mcc(preds, labels):
    from sklearn.metrics import matthews_corrcoef
    with warnings.catch_warnings():     # "a single label was found": mcc is 0.0 then
        warnings.simplefilter("ignore")
        return {"mcc": _finite_or_zero(matthews_corrcoef(labels.astype(np.int64), _class_preds(preds)))}


def _acc_and_f1(preds, labels):
    from sklearn.metrics import accuracy_score, f1_score
    p, y = _class_preds(preds), labels.astype(np.int64)
    acc = float(accuracy_score(y, p))
    f1 = float(f1_score(y, p, labels=[1], average="macro", zero_division=0))
    return {"acc": acc, "f1": f1, "acc_and_f1": (acc + f1) / 2.0}


def _pearson_and_spearman(preds, labels):
    from scipy.stats import pearsonr, spearmanr
    p, y = _scores(preds), labels.astype(np.float64)
    pr, sr = _correlation(pearsonr, p, y), _correlation(spearmanr, p, y)
    return {"pearson": pr, "spearman": sr, "corr": (pr + sr) / 2.0}


def _acc_and_macro_f1(preds, labels):
    from sklearn.metrics import accuracy_score, f1_score
    p, y = _class_preds(preds), labels.astype(np.int64)
    return {"acc": float(accuracy_score(y, p)),
            "macro_f1": float(f1_score(y, p, average="macro", zero_division=0))}


def _multilabel(preds, labels):
    from sklearn.metrics import f1_score
    logits = np.asarray(preds, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if logits.ndim != 2 or logits.shape != y.shape:
        raise ValueError(f"multilabel metrics need logits and multi-hot labels of the same [N, C] shape, "
                         f"got {logits.shape} and {y.shape}")
    probs = sigmoid(logits)
    hits, yi = (probs > 0.5).astype(np.int64), y.astype(np.int64)
    micro = float(f1_score(yi, hits, average="micro", zero_division=0))
    macro = float(f1_score(yi, hits, average="macro", zero_division=0))
    # mean binary log-loss over examples and labels (sklearn's log_loss treats
    # [N, C] as one multi-class distribution per row, which this is not)
    p = np.clip(probs, LOGLOSS_EPS, 1 - LOGLOSS_EPS)
    logloss = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return {"micro_f1": micro, "macro_f1": macro, "one_minus_mlogloss": 1.0 - logloss}


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
