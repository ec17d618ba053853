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

:func:`measure` runs quantize.py's guard on both predictors (dev metric,
agreement, latency) and :func:`report` prints it; the statistics above need
no paddle, the guard imports it when it runs.
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


def error_headroom(ref, new, target=0.99, steps=20):
    """How far a classifier's INT8 error is from a target agreement, from the
    logit rows of the FP32 (``ref``) and INT8 (``new``) models on the same
    examples.  A flip needs an example near the FP32 decision boundary and an
    INT8 error large enough to cross it; this measures both:

    * ``margin``: the FP32 top-1 minus runner-up logit, its quantiles over
      all examples and over the flipped ones;
    * ``error``: the quantiles of |change of that margin| under INT8;
    * ``scaled``: the agreement if every INT8 logit error were scaled by s
      (logits ``ref + s * (new - ref)``) for s = 1, 1 - 1/steps, ..., 1/steps,
      and ``scale_for_target``: the largest such s that reaches ``target``
      (None if none does), i.e. how much smaller the INT8 error must get."""
    a = np.asarray(ref, dtype=np.float64)
    b = np.asarray(new, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape or a.shape[1] < 2 or not len(a):
        raise ValueError(f"error_headroom needs two equal (examples, classes >= 2) logit arrays, got "
                         f"{a.shape} and {b.shape}")
    top = a.argmax(1)
    rows = np.arange(len(a))
    runner = np.where(np.arange(a.shape[1])[None, :] == top[:, None], -np.inf, a).argmax(1)
    margin = a[rows, top] - a[rows, runner]
    moved = np.abs((b[rows, top] - b[rows, runner]) - margin)
    flipped = b.argmax(1) != top
    q = (0.5, 0.9, 0.99)

    def quantiles(x):
        return {f"p{int(100 * p)}": float(np.quantile(x, p)) for p in q} if len(x) else None
    scaled = {}
    for i in range(steps, 0, -1):
        s = i / steps
        scaled[round(s, 4)] = float(np.mean((a + s * (b - a)).argmax(1) == top))
    meets = [s for s, v in scaled.items() if v >= target]
    return {"examples": len(a), "flips": int(flipped.sum()), "target": target,
            "margin": {"all": quantiles(margin), "flipped": quantiles(margin[flipped])},
            "error": quantiles(moved), "scaled": scaled, "scale_for_target": max(meets) if meets else None}


def flip_overlap(ref, runs, thresholds=(0.01, 0.05, 0.13, 0.2)):
    """Whether several INT8 models flip the same examples: ``ref`` the FP32
    logit rows, ``runs`` {name: logit rows of one INT8 model on the same
    examples}.  Returns each run's flipped example indices, how many
    examples flip under any run and under every run, and how many examples
    have an FP32 margin (top-1 minus runner-up) below each threshold: the
    near-ties a small error can flip."""
    a = np.asarray(ref, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] < 2 or not len(a) or not runs:
        raise ValueError(f"flip_overlap needs (examples, classes >= 2) FP32 logits and at least one run, got "
                         f"{a.shape} and {len(runs)} runs")
    top = a.argmax(1)
    flips = {}
    for name, rows in runs.items():
        b = np.asarray(rows, dtype=np.float64)
        if b.shape != a.shape:
            raise ValueError(f"flip_overlap: run {name!r} has logits of shape {b.shape}, the FP32 ones {a.shape}")
        flips[name] = sorted(np.nonzero(b.argmax(1) != top)[0].tolist())
    sets = [set(f) for f in flips.values()]
    srt = np.sort(a, axis=1)
    margin = srt[:, -1] - srt[:, -2]
    return {"examples": len(a), "flips": flips, "union": len(set().union(*sets)),
            "in_every_run": len(set.intersection(*sets)),
            "margin_below": {t: int((margin < t).sum()) for t in thresholds}}


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


# --------------------------------------------------------------------------- quantize.py's guard
def measure(args, data, fp32, int8_prefix):
    """quantize.py's guard: both predictors on dev and the held-out texts
    (``data``: a utils.quant_eval.QuantData), the dev metric drop and the
    agreement over dev + held-out texts with their intervals, the paired
    latency; returns (summary, the reasons to refuse)."""
    from . import inference, quant_search
    from .bench_report import int8_instructions
    int8 = inference.create_predictor(int8_prefix, threads=args.threads, mkldnn=True, int8=True)
    fp_res, fp_score, fp_dev, fp_s = data.evaluate_dev(fp32, args.eval_batch_size)
    q_res, q_score, q_dev, q_s = data.evaluate_dev(int8, args.eval_batch_size)
    fp_held, _ = data.outputs(fp32, data.held_out, args.eval_batch_size)
    q_held, _ = data.outputs(int8, data.held_out, args.eval_batch_size)
    first = next(iter(data.dev))
    fp_pred, labels = data.scorable(fp_dev[first], data.dev[first])
    q_pred, _ = data.scorable(q_dev[first], data.dev[first])
    drop = metric_drop(data.score, fp_pred, q_pred, labels, seed=args.seed)
    ref = [o for s in data.dev for o in fp_dev[s]] + list(fp_held)
    new = [o for s in data.dev for o in q_dev[s]] + list(q_held)
    agree = agreement(data.kind, ref, new, data.label_list, seed=args.seed)
    agree["by_source"] = {
        "dev": agreement(data.kind, [o for s in data.dev for o in fp_dev[s]],
                         [o for s in data.dev for o in q_dev[s]], data.label_list)["value"],
        "held_out": agreement(data.kind, fp_held, q_held, data.label_list)["value"]}
    lat_ids = quant_search.latency_batch(data.held_out, args.latency_batch, data.max_seq_length)
    latency = dict(quant_search.paired_latency(fp32, int8, lat_ids), batch_size=args.latency_batch,
                   seq_len=data.max_seq_length)
    summary = {"metric": data.metric_name, "fp32": fp_score, "int8": q_score, "drop": drop["drop"],
               "drop_se": drop["se"], "drop_ci95": drop["ci95"], "max_drop": args.max_drop,
               "fp32_results": fp_res, "int8_results": q_res, "agreement": agree, "min_agreement": args.min_agreement,
               "texts": data.pool_sizes, "latency_ms": latency, "dev_seconds": {"fp32": fp_s, "int8": q_s},
               "cpu_int8_instructions": int8_instructions()}
    if data.kind == "regression":
        summary["max_abs_diff_of_predictions"] = agree["max_abs_diff"]
    elif data.kind != "token_classification":
        summary["prediction_agreement"] = agree["value"]
    return summary, verdict(agree, drop, args.min_agreement, args.max_drop)


def report(s):
    """Print the guard's summary (:func:`measure`), a line per measure."""
    from .bench_report import NO_INT8_NOTE
    a, lat, q = s["agreement"], s["latency_ms"], s.get("qat")
    if q:
        print(f"quantization-aware distillation: {q['steps']} steps on {q['texts']} training texts, loss "
              f"{q['loss_first']:.4f} -> {q['loss_last']:.4f}; simulated divergence from FP32 "
              f"{q['simulated_divergence_before']:.4f} -> {q['simulated_divergence_after']:.4f}", flush=True)
    print(f"dev {s['metric']}: FP32 {s['fp32']:.4f}  INT8 {s['int8']:.4f}  drop {s['drop']:+.4f} (95% interval "
          f"{s['drop_ci95'][0]:+.4f} .. {s['drop_ci95'][1]:+.4f}; --max_drop {s['max_drop']:g})", flush=True)
    print(f"agreement with FP32 ({a['measure']}): {a['value']:.4f} (95% interval {a['ci95'][0]:.4f} .. "
          f"{a['ci95'][1]:.4f}) on {a['examples']} examples: dev {a['by_source']['dev']:.4f}, held-out "
          f"{a['by_source']['held_out']:.4f} ({s['texts']['held_out']} texts); --min_agreement "
          f"{s['min_agreement']:g}", flush=True)
    o = s.get("onednn")
    if o:
        print(f"oneDNN runs {o['int8_sites']} of the {o['quantized_sites']} quantized encoder ops in INT8"
              + (f"; in FP32 (their quantization dropped by its passes): {', '.join(o['fp32_sites'])}"
                 if o["fp32_sites"] else ""), flush=True)
    print(f"latency at batch {lat['batch_size']} x {lat['seq_len']}: FP32 {lat['fp32']:.1f} ms, INT8 "
          f"{lat['int8']:.1f} ms ({lat['speedup']:.2f}x)", flush=True)
    if s.get("cpu_int8_instructions") == []:
        print(f"note: {NO_INT8_NOTE}", flush=True)
