"""The INT8 guard's measures (utils/quant_guard.py) against scipy and
seqeval, and the INT8 rows of the compression report.  No paddle model runs."""
import json
import os

import numpy as np
import pytest

from helpers import read_json
from utils import quant_guard as G


def test_wilson_interval_equals_scipy():
    from scipy.stats import binomtest
    for k, n in ((95, 100), (1990, 2000), (2000, 2000), (0, 30), (481, 500)):
        ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        lo, hi = G.wilson(k, n)
        assert lo == pytest.approx(ref.low, abs=1e-6) and hi == pytest.approx(ref.high, abs=1e-6), (k, n)
    # the point: 5% flips on 500 dev examples is far outside 99%, 1% on 2000 is resolved to +-0.45 points
    lo, hi = G.wilson(1980, 2000)
    assert hi - lo < 0.01 and lo > 0.984
    assert G.wilson(475, 500)[1] < 0.97


def test_error_headroom_finds_the_error_scale_that_reaches_the_target():
    # 3 classes; 1,000 examples, 10 of them close to the boundary (margin 0.1 between classes 0 and 2)
    # and moved across it by an error of 0.3, the others far from it (margin >= 2) with errors of 0.3
    rng = np.random.RandomState(0)
    ref = np.zeros((1000, 3))
    ref[:, 0] = 2.0 + rng.rand(1000)
    ref[:, 1] = -5.0                           # class 2 is every example's runner-up
    ref[:10, 2] = ref[:10, 0] - 0.1
    err = np.zeros_like(ref)
    err[:, 0] = -0.15
    err[:, 2] = 0.15                           # the class-0-vs-2 margin moves by 0.3 everywhere
    new = ref + err
    h = G.error_headroom(ref, new, target=0.995)
    assert h["flips"] == 10 and h["examples"] == 1000
    assert h["scaled"][1.0] == pytest.approx(0.99)
    # flips need s * 0.3 > 0.1: below s = 1/3 none remain, so the largest scale reaching 0.995 is 0.3
    assert h["scale_for_target"] == pytest.approx(0.3)
    assert h["scaled"][0.35] == pytest.approx(0.99) and h["scaled"][0.3] == 1.0
    assert h["margin"]["flipped"]["p50"] == pytest.approx(0.1)
    assert h["error"]["p50"] == pytest.approx(0.3)
    # an error too large to scale away within the grid, and the exact-copy case
    assert G.error_headroom(ref, ref, target=1.0)["scale_for_target"] == 1.0
    worse = ref.copy()
    worse[:, 2] += 100.0                       # every prediction flips at every scale down to 1/4
    assert G.error_headroom(ref, worse, target=0.99, steps=4)["scale_for_target"] is None
    with pytest.raises(ValueError, match="logit arrays"):
        G.error_headroom(ref[:, :1], new[:, :1])


def test_flip_overlap_counts_shared_flips_and_near_ties():
    ref = np.array([[1.0, 0.0], [0.0, 0.005], [2.0, 1.96], [0.0, 3.0], [5.0, 4.9]])   # margins 1, .005, .04, 3, .1
    a = ref.copy()
    a[1] = [0.01, 0.0]                          # flips example 1
    a[2] = [1.0, 2.0]                           # and example 2
    b = ref.copy()
    b[1] = [1.0, 0.0]                           # flips example 1 only
    o = G.flip_overlap(ref, {"a": a, "b": b})
    assert o["flips"] == {"a": [1, 2], "b": [1]}
    assert o["union"] == 2 and o["in_every_run"] == 1 and o["examples"] == 5
    assert o["margin_below"] == {0.01: 1, 0.05: 2, 0.13: 3, 0.2: 3}
    with pytest.raises(ValueError, match="shape"):
        G.flip_overlap(ref, {"a": a[:3]})
    with pytest.raises(ValueError, match="at least one run"):
        G.flip_overlap(ref, {})


def test_classification_and_regression_agreement():
    from scipy.stats import pearsonr
    rng = np.random.RandomState(0)
    ref = rng.randn(400, 3)
    new = ref.copy()
    new[:12] = new[:12][:, ::-1] * np.array([1, 1, 1])      # reversed rows: argmax changes where not symmetric
    flips = int(np.sum(ref.argmax(1) != new.argmax(1)))
    a = G.agreement("classification", list(ref), list(new))
    assert a["flips"] == flips > 0 and a["value"] == pytest.approx(1 - flips / 400) and a["examples"] == 400
    assert a["ci95"][0] < a["value"] < a["ci95"][1]
    x = rng.randn(300)
    y = x + 0.3 * rng.randn(300)
    r = G.agreement("regression", list(x), list(y))
    assert r["measure"] == "pearson" and r["value"] == pytest.approx(pearsonr(x, y)[0], abs=1e-9)
    assert r["ci95"][0] < r["value"] < r["ci95"][1] and r["max_abs_diff"] == pytest.approx(np.abs(x - y).max())
    m = G.agreement("multilabel", [np.array([1.0, -1.0]), np.array([2.0, 3.0])],
                    [np.array([0.5, -2.0]), np.array([2.0, -3.0])])
    assert m["value"] == 0.5


def test_entity_agreement_equals_seqeval():
    from seqeval.metrics import f1_score
    from seqeval.metrics.sequence_labeling import get_entities
    labels = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    rng = np.random.RandomState(1)
    ref = [rng.randint(0, 5, size=rng.randint(1, 12)) for _ in range(300)]
    new = [np.where(rng.rand(len(r)) < 0.1, rng.randint(0, 5, size=len(r)), r) for r in ref]
    for r in ref[:50]:
        tags = [labels[i] for i in r]
        assert G.entities(tags) == {(t, s, e + 1) for t, s, e in get_entities(tags)}, tags
    a = G.agreement("token_classification", ref, new, labels)
    want = f1_score([[labels[i] for i in r] for r in ref], [[labels[i] for i in n] for n in new])
    assert a["measure"] == "entity_f1" and a["value"] == pytest.approx(want, abs=1e-9) and a["value"] < 1
    assert a["ci95"][0] <= a["value"] <= a["ci95"][1]
    same = G.agreement("token_classification", ref, ref, labels)
    assert same["value"] == 1.0 and same["sentences_unchanged"] == 1.0


def test_metric_drop_interval_matches_the_paired_standard_error():
    rng = np.random.RandomState(2)
    n = 2000
    labels = rng.randint(0, 2, size=n)
    ref = np.eye(2)[np.where(rng.rand(n) < 0.9, labels, 1 - labels)]
    new = ref.copy()
    flip = rng.rand(n) < 0.02
    new[flip] = new[flip][:, ::-1]
    acc = lambda logits, y: float(np.mean(logits.argmax(-1) == y))  # noqa: E731
    d = G.metric_drop(acc, ref, new, labels)
    diff = (ref.argmax(-1) == labels).astype(float) - (new.argmax(-1) == labels)
    assert d["drop"] == pytest.approx(diff.mean())
    assert d["se"] == pytest.approx(diff.std() / np.sqrt(n), rel=0.2)   # bootstrap vs analytic
    assert d["ci95"][0] < d["drop"] < d["ci95"][1]


def test_verdict_names_each_failed_check():
    agree = {"measure": "prediction_agreement", "value": 0.95, "examples": 2500}
    drop = {"drop": 0.002, "ci95": [-0.01, 0.014]}
    reasons = G.verdict(agree, drop, 0.99, 0.015)
    assert len(reasons) == 1 and "--min_agreement" in reasons[0]
    assert G.verdict(dict(agree, value=0.995), drop, 0.99, 0.015) == []
    both = G.verdict(agree, dict(drop, drop=0.02), 0.99, 0.015)
    assert len(both) == 2 and "--max_drop" in both[1]
    assert G.verdict(dict(agree, value=float("nan")), drop, 0.99, 0.015)   # constant outputs refuse


def test_report_lists_int8_models_with_agreement_and_fp32_ops(tmp_path):
    from test_benchmark_analysis import _fake_ofa_dir
    from utils.report import build_ofa_report
    d = _fake_ofa_dir(str(tmp_path / "ofa"))
    prefix = str(tmp_path / "int8" / "model")
    os.makedirs(os.path.dirname(prefix))
    q = {"metric": "acc", "fp32": 0.9, "int8": 0.895, "drop": 0.005, "fp32_sites": ["L1.ffn2", "L0.out"],
         "agreement": {"measure": "prediction_agreement", "value": 0.9925, "ci95": [0.988, 0.995], "examples": 2060},
         "calibration": {"algo": "mse", "batch_num": 20, "weight_quantize_type": "channel_wise_abs_max"}}
    with open(prefix + ".info.json", "w") as f:
        json.dump({"width": 0.5, "depth": 1.0, "int8": True, "quantization": q}, f)
    models = [{"name": "teacher", "width": 1.0}, {"name": "half", "width": 0.5},
              {"name": "half_int8", "width": 0.5, "int8": True, "prefix": prefix}]
    bench = {"settings": {"seq_len": 32, "repeats": 3}, "models": models,
             "rows": [{"model": m, "batch_size": 16, "median_ms": v}
                      for m, v in (("teacher", 10.0), ("half", 6.0), ("half_int8", 3.0))]}
    paths = build_ofa_report(d, bench=bench, bench_path="b.json")
    rep = read_json(paths["json"])
    assert len(rep["rows"]) == 3 and len(rep["int8_rows"]) == 1      # FP32 rows untouched
    r = rep["int8_rows"][0]
    assert r["score"] == 0.895 and r["latency_ms"] == {"16": 3.0} and r["params"] == 14370
    assert r["int8"]["agreement"] == 0.9925 and r["int8"]["fp32_ops"] == ["L1.ffn2", "L0.out"]
    md = open(paths["md"]).read()
    line = [l for l in md.splitlines() if "INT8 |" in l or "width 0.5000 INT8" in l]
    assert line and "0.9925 (0.9880-0.9950, 2060)" in line[0] and "L1.ffn2, L0.out" in line[0]
    assert "3.33x" in line[0]                 # 10 / 3: the teacher's latency over the INT8 model's
    assert "ops kept FP32" in md
