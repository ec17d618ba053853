"""Prediction over a feature list, task evaluation and the written form of
predictions, shared by every stage and predict.py."""
import numpy as np

from .publish import staged_file
from .parallel import eval_batches


def to_tensors(arrays):
    import paddle
    return [paddle.to_tensor(a) for a in arrays]


def predict(forward, features, collate, batch_size):
    """Run ``forward(input_ids, token_type_ids) -> logits`` over ``features``
    in eval batches of similar lengths (less padding to compute); returns
    (logits, labels) as numpy arrays in feature order, concatenated (token
    tasks: padded to the longest feature with label -100); labels is None
    for unlabelled features."""
    import paddle
    batches = eval_batches(len(features), batch_size, [len(f["input_ids"]) for f in features])
    if not batches:
        raise ValueError("predict: no features")
    outs, labels = [], []
    with paddle.no_grad():
        for idx in batches:
            arrays = collate([features[i] for i in idx])
            ids, seg = to_tensors(arrays[:2])
            outs.append(forward(ids, seg).numpy())
            labels.append(arrays[2])
    labelled = all(l is not None for l in labels)
    if outs[0].ndim == 3:  # token classification: pad the time axis
        t = max(o.shape[1] for o in outs)
        outs = [np.pad(o, ((0, 0), (0, t - o.shape[1]), (0, 0))) for o in outs]
        if labelled:
            labels = [np.pad(l, ((0, 0), (0, t - l.shape[1])), constant_values=-100) for l in labels]
    back = np.argsort(np.concatenate(batches), kind="stable")   # sorted order -> feature order
    return np.concatenate(outs)[back], (np.concatenate(labels)[back] if labelled else None)


def evaluate_task(forward, dev_sets, collate, task, batch_size):
    """Evaluate on every dev split of a GLUE-style task.  Returns
    (results, score): results = {split: metrics}, score = main metric of the
    first split (MNLI: matched)."""
    from .metrics import compute_metrics, main_score
    results = {}
    for split, feats in dev_sets.items():
        logits, labels = predict(forward, feats, collate, batch_size)
        results[split] = compute_metrics(task.metric, logits, labels)
    first = next(iter(dev_sets))
    return results, main_score(task.metric, results[first])


def format_results(results):
    return "  ".join(f"{split}: " + ", ".join(f"{k}={v:.4f}" for k, v in m.items()) for split, m in results.items())


def prediction_fields(task_type, label_list, logits, label_delimiter=","):
    """The output columns (before the text) of each example, as predict.py
    writes them: classification ``[label, probability]``; regression
    ``[score]``; multilabel ``[labels, probabilities]`` -- the labels whose
    sigmoid probability is > 0.5 joined by ``label_delimiter`` (empty: none)
    and ``label=probability`` for every label, joined the same way."""
    from .metrics import sigmoid
    labels = list(label_list or [])
    name = lambda k: labels[k] if k < len(labels) else str(k)  # noqa: E731
    rows = []
    for z in np.asarray(logits, dtype=np.float64):
        z = z.reshape(-1)
        if task_type == "regression":
            rows.append([f"{float(z[0]):.4f}"])
        elif task_type == "multilabel":
            p = sigmoid(z)
            rows.append([label_delimiter.join(name(k) for k in range(len(p)) if p[k] > 0.5),
                         label_delimiter.join(f"{name(k)}={p[k]:.4f}" for k in range(len(p)))])
        else:
            e = np.exp(z - z.max())
            p = e / e.sum()
            k = int(p.argmax())
            rows.append([name(k), f"{p[k]:.4f}"])
    return rows


def write_predictions(path, examples, logits, task, label_delimiter=None):
    """``prediction_fields`` + the text(s) of each example, one TSV line each."""
    fields = prediction_fields(task.task_type, task.labels, logits,
                               label_delimiter or getattr(task, "label_delimiter", ","))
    with staged_file(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for ex, cols in zip(examples, fields):
            text = [ex.text_a] + ([ex.text_b] if ex.text_b is not None else [])
            f.write("\t".join(cols + [t.replace("\t", " ").replace("\n", " ") for t in text]) + "\n")
    return path
