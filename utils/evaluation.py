"""Prediction over a feature list and task evaluation, shared by every stage."""
import numpy as np

from .training import eval_batches


def to_tensors(arrays):
    import paddle
    return [paddle.to_tensor(a) for a in arrays]


def predict(forward, features, collate, batch_size):
    """Run ``forward(input_ids, token_type_ids) -> logits`` over ``features``
    in eval batches; returns (logits, labels) as numpy arrays, concatenated
    (token tasks: padded to the longest batch with label -100)."""
    import paddle
    outs, labels = [], []
    with paddle.no_grad():
        for idx in eval_batches(len(features), batch_size):
            arrays = collate([features[i] for i in idx])
            ids, seg = to_tensors(arrays[:2])
            outs.append(forward(ids, seg).numpy())
            labels.append(arrays[2])
    if outs and outs[0].ndim == 3:  # token classification: pad the time axis
        t = max(o.shape[1] for o in outs)
        outs = [np.pad(o, ((0, 0), (0, t - o.shape[1]), (0, 0))) for o in outs]
        labels = [np.pad(l, ((0, 0), (0, t - l.shape[1])), constant_values=-100) for l in labels]
    return np.concatenate(outs), np.concatenate(labels)


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
