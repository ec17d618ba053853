"""benchmark.py, analyze.py (utils/analysis.py) and report.py (utils/report.py)
on a tiny BERT exported as static models at full size and at half width."""
import csv
import json
import os

import pytest

from helpers import REPO, paddle3, read_json, run_script, tiny_config, write_tiny_bert, write_vocab

PRUNED = ([2, 2], [32, 32])   # tiny config: 4 heads of 8, FFN 64 -> width 1/2


def _export(model, prefix, width):
    """save_static + PREFIX.info.json + tokenizer dir, the way export_model.py writes them."""
    from utils import inference
    inference.save_static(model, prefix)
    tok = prefix + inference.TOKENIZER_SUFFIX
    os.makedirs(tok, exist_ok=True)
    write_vocab(os.path.join(tok, "vocab.txt"))
    inference.write_info(prefix, {"task_type": "classification", "task_name": "SST-2", "label_list": ["0", "1"],
                                  "max_seq_length": 32, "width": width,
                                  "tokenizer_dir": os.path.basename(prefix) + inference.TOKENIZER_SUFFIX})


@pytest.fixture(scope="module")
def static_models(tmp_path_factory):
    import paddle
    from paddlenlp.transformers import BertConfig, BertForSequenceClassification
    from utils.modeling import apply_pruned_shapes
    root = tmp_path_factory.mktemp("bench")
    paddle.seed(0)
    full = BertForSequenceClassification(BertConfig(**tiny_config()))
    half = apply_pruned_shapes(BertForSequenceClassification(BertConfig(**tiny_config())), *PRUNED)
    prefixes = {}
    for name, model, width in (("teacher", full, 1.0), ("half", half, 0.5)):
        prefixes[name] = str(root / name / "model")
        _export(model, prefixes[name], width)
    return root, prefixes, {"teacher": full, "half": half}


@pytest.fixture(scope="module")
def bench(static_models):
    root, prefixes, _ = static_models
    out = str(root / "out" / "bench")
    r = run_script("benchmark.py", "--models", prefixes["teacher"], prefixes["half"], "--batch_sizes", "1", "2",
                   "--max_seq_length", "16", "--repeats", "3", "--warmup", "1", "--memory", "--profile",
                   "--profile_runs", "2", "--output", out)
    return out, r


# --------------------------------------------------------------------------- analysis
TINY_HAND = {
    # vocab 73, hidden 32, 2 layers, 4 heads of 8, FFN 64, 64 positions, 2 types, 2 labels
    "params": {"embeddings": (73 + 64 + 2) * 32 + 2 * 32,                                   # 4,512
               "attention": 2 * (3 * (32 * 32 + 32) + (32 * 32 + 32) + 2 * 32),            # 8,576
               "ffn": 2 * ((32 * 64 + 64) + (64 * 32 + 32) + 2 * 32),                      # 8,512
               "head": (32 * 32 + 32) + (32 * 2 + 2)},                                     # 1,122
    # seq 128, one example: 2 x multiply-adds
    "flops": {"embeddings": 0,
              "attention": 2 * 2 * (3 * 128 * 32 * 32 + 2 * 128 * 128 * 32 + 128 * 32 * 32),
              "ffn": 2 * 2 * (2 * 128 * 32 * 64),
              "head": 2 * (32 * 32 + 32 * 2)},
}


def test_analysis_equals_a_hand_count_and_the_real_models(static_models):
    from utils import analysis
    from utils.extract import param_count
    _, prefixes, models = static_models
    shape = analysis.shape_from_config(tiny_config(), "tiny")
    c = analysis.count(shape, 128)
    for kind in ("params", "flops"):
        for comp, n in TINY_HAND[kind].items():
            assert c[kind][comp] == n, (kind, comp)
        assert c[kind]["total"] == sum(TINY_HAND[kind].values())
    assert c["params"]["total"] == 22722 == param_count(models["teacher"])
    half = analysis.at_width(shape, "1/2")
    assert (half.heads_per_layer, half.ffn_per_layer) == PRUNED
    assert analysis.count(half)["params"]["total"] == param_count(models["half"]) == 14370
    # pruned shapes recorded in config.json are honoured
    cfg = dict(tiny_config(), compression_suite={"heads_per_layer": PRUNED[0], "ffn_per_layer": PRUNED[1]})
    assert analysis.count(analysis.shape_from_config(cfg)) == analysis.count(half)
    # the static programs give back the same shapes and counts
    for name, ref in (("teacher", shape), ("half", half)):
        st = analysis.shape_from_static(prefixes[name])
        assert (st.heads_per_layer, st.ffn_per_layer) == (ref.heads_per_layer, ref.ffn_per_layer)
        assert analysis.count(st, 128) == analysis.count(ref, 128)


def test_bert_base_reproduces_the_upstream_parameter_counts(tmp_path):
    from utils import analysis
    base = analysis.builtin_or_file("bert-base")
    full = analysis.count(base)["params"]["total"]
    two_thirds = analysis.count(analysis.at_width(base, "2/3"))["params"]["total"]
    assert abs(full - 110e6) < 1e6, full             # 109,483,778
    assert abs(two_thirds - 81e6) < 1e6, two_thirds  # 81,150,722
    # FLOPs shrink with the width (embeddings cost no FLOPs): exactly 2/3 and 1/2 of the encoder
    f = analysis.flops(base)
    assert abs(f / 1e9 - 22.35) < 0.01
    half = analysis.analyze(analysis.at_width(base, 0.5))
    assert abs(half["predicted_speedup"] - 2.0) < 1e-3

    out = str(tmp_path / "a.json")
    r = run_script("analyze.py", "--config", "bert-base", "--widths", "1.0", "2/3", "1/2", "--output", out)
    assert "81,150,722" in r.stdout and "109,483,778" in r.stdout
    res = read_json(out)
    assert [round(x["width"], 4) for x in res["rows"]] == [1.0, 0.6667, 0.5]
    assert [x["heads_per_layer"][0] for x in res["rows"]] == [12, 8, 6]
    assert res["rows"][1]["params"]["total"] == two_thirds and res["seq_len"] == 128


def test_analyze_cli_on_a_model_dir_an_ofa_checkpoint_and_a_static_model(tmp_path, static_models):
    _, prefixes, _ = static_models
    d = write_tiny_bert(str(tmp_path / "m"), with_weights=False)
    cfg = read_json(os.path.join(d, "config.json"))
    cfg["compression_suite"] = {"supernet": {"widths": [1.0, 0.75, 0.5]}}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)
    out = str(tmp_path / "ofa.json")
    run_script("analyze.py", "--model_dir", d, "--output", out)     # default: the trained widths
    rows = read_json(out)["rows"]
    assert [r["heads_per_layer"] for r in rows] == [[4, 4], [3, 3], [2, 2]]
    assert [r["params"]["total"] for r in rows] == [22722, 18546, 14370]   # = all_results.json of the OFA test
    out2 = str(tmp_path / "static.json")
    run_script("analyze.py", "--static_model", prefixes["half"], "--seq_len", "128", "--output", out2)
    row = read_json(out2)["rows"][0]
    assert row["params"]["total"] == 14370 and row["flops"]["total"] == (2 * 2 * (3 * 128 * 32 * 16 + 2 * 128 * 128 * 16 + 128 * 16 * 32)
                                                                   + 2 * 2 * 2 * 128 * 32 * 32 + 2 * (32 * 32 + 32 * 2))


def test_analyze_bad_input_is_one_error_line(tmp_path):
    for args in (["--config", "bert-huge"], ["--model_dir", str(tmp_path / "nope")],
                 ["--config", "bert-base", "--widths", "0.01"], ["--config", "bert-base", "--seq_len", "0"]):
        r = run_script("analyze.py", *args, check=False)
        assert r.returncode == 2, (args, r.stderr)
        errors = [l for l in r.stderr.splitlines() if l.startswith("error:")]
        assert len(errors) == 1 and "Traceback" not in r.stderr, (args, r.stderr)


# --------------------------------------------------------------------------- benchmark
def test_benchmark_writes_csv_and_json_side_by_side(bench, static_models):
    from utils import analysis
    out, r = bench
    base = analysis.shape_from_config(tiny_config())
    predicted = analysis.flops(base, 16) / analysis.flops(analysis.at_width(base, 0.5), 16)
    with open(out + ".csv") as f:
        rows = list(csv.DictReader(f))
    for col in ("model", "batch_size", "seq_len", "median_ms", "p90_ms", "throughput", "speedup", "speedup_paired",
                "flops_speedup",
                "measured_over_predicted", "params", "peak_rss_mb"):
        assert col in rows[0], col
    assert [(x["model"], x["batch_size"]) for x in rows] == [("teacher", "1"), ("half", "1"),
                                                             ("teacher", "2"), ("half", "2")]
    res = read_json(out + ".json")
    assert res["settings"]["mkldnn"] is True and res["settings"]["threads"] == 2
    assert res["settings"]["seq_len"] == 16 and res["settings"]["repeats"] == 3
    for row in res["rows"]:
        assert len(row["times_ms"]) == 3 and row["median_ms"] > 0 and row["p90_ms"] >= row["median_ms"]
        assert abs(row["throughput"] - row["batch_size"] * 1e3 / row["median_ms"]) < 1e-6
        if row["model"] == "teacher":
            assert row["speedup"] == 1.0 and row["speedup_paired"] == 1.0 and row["flops_speedup"] == 1.0
        else:
            assert row["flops_speedup"] == pytest.approx(predicted)
            assert row["measured_over_predicted"] == pytest.approx(row["speedup"] / row["flops_speedup"])
    models = {m["name"]: m for m in res["models"]}
    assert models["half"]["width"] == 0.5 and models["half"]["vocab_size"] == 73
    assert models["half"]["heads_per_layer"] == [2, 2] and models["teacher"]["params"] == 22722
    for m in res["models"]:   # --memory: one fresh process per model and batch size
        assert set(m["peak_rss_mb"]) == {"1", "2"}
        assert all(v > m["baseline_rss_mb"] > 50 for v in m["peak_rss_mb"].values())
    assert all(row["peak_rss_mb"] > 50 for row in res["rows"])
    assert "speed-up" in r.stdout and "FLOPs-pred" in r.stdout and "meas/pred" in r.stdout
    # --profile: time per operator type of every model; the linear layers are fc ops after oneDNN fusion
    prof = res["profile_ms_per_run"]["2"]
    # (paddle 3 names them with their dialect: "onednn_op.fc")
    fc = [v for k, v in prof["half"].items() if k.split(".")[-1] == "fc"]
    assert set(prof) == {"teacher", "half"} and len(fc) == 1 and fc[0]["calls"] == 2 * 6 + 2
    assert "time per operator type, batch 2" in r.stdout
    assert not os.path.exists(os.path.join(REPO, "profiler_log"))  # the profiler writes no trace files (cwd = REPO)


def test_benchmark_bad_input_is_one_error_line(static_models, tmp_path):
    _, prefixes, _ = static_models
    cases = [(["--models", prefixes["teacher"], str(tmp_path / "missing" / "model"), "--max_seq_length", "16"],
              "no static model"),
             (["--models", prefixes["teacher"], "--device", "gpu"], "CUDA"),
             (["--models", prefixes["teacher"], "--trt_fp16"], "--device gpu"),
             (["--models", prefixes["teacher"], "--repeats", "2"], "at least 3"),
             (["--models", prefixes["teacher"], "--max_seq_length", "65"], "position embeddings")]
    for args, words in cases:
        r = run_script("benchmark.py", *args, check=False)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        errors = [l for l in r.stderr.splitlines() if l.startswith("error:")]
        assert len(errors) == 1 and words in errors[0], (args, r.stderr)
        assert "Traceback" not in r.stderr


def test_default_names_tell_models_apart():
    from benchmark import default_names
    assert default_names(["/a/teacher/model", "/a/w05/model"]) == ["teacher", "w05"]
    assert default_names(["/x/run1/static/model", "/x/run2/static/model"]) == ["run1/static", "run2/static"]
    assert default_names(["/a/b/model"]) == ["model"]


# --------------------------------------------------------------------------- report
def _fake_ofa_dir(d):
    """all_results.json as run_glue_ofa.py writes it, and the checkpoint config."""
    os.makedirs(os.path.join(d, "final"), exist_ok=True)
    cfg = dict(tiny_config(), compression_suite={"task_type": "classification",
                                                 "supernet": {"widths": [1.0, 0.75, 0.5]}})
    with open(os.path.join(d, "final", "config.json"), "w") as f:
        json.dump(cfg, f)
    rows = [{"width": w, "requested": w, "heads": h, "ffn": m, "params": p, "score": s, "step": 20,
             "diff_from_teacher": s - 0.95, "dir": f"width_{w:.4f}", "results": {"dev": {"acc": s}}}
            for w, h, m, p, s in ((1.0, 4, 64, 22722, 0.95), (0.75, 3, 48, 18546, 0.93), (0.5, 2, 32, 14370, 0.9))]
    with open(os.path.join(d, "all_results.json"), "w") as f:
        json.dump({"teacher_score": 0.95, "rows": rows}, f)
    return d


def test_write_report_without_benchmark_plots_against_flops(tmp_path):
    from utils.report import write_report
    rows = [{"width": 1.0, "heads": 4, "ffn": 64, "params": 22722, "flops": 8.39e6, "score": 0.95},
            {"width": 0.5, "heads": 2, "ffn": 32, "params": 14370, "flops": 4.2e6, "score": None}]
    paths = write_report(str(tmp_path), rows, {"score": 0.95, "params": 22722, "flops": 8.39e6})
    assert os.path.getsize(paths["png"]) > 5000
    md = open(paths["md"]).read()
    assert "| teacher |" in md and "width 0.5000" in md and "latency" not in md.split("![")[0]
    assert read_json(paths["json"])["batch_size_plotted"] is None


def test_report_cli_with_the_benchmark(bench, tmp_path):
    out, _ = bench
    d = _fake_ofa_dir(str(tmp_path / "ofa"))
    # benchmark names: "teacher" (by name) and "half" (by the width in its info.json)
    run_script("report.py", "--ofa_dir", d, "--benchmark", out + ".json", "--batch_size", "2")
    md = open(os.path.join(d, "report.md")).read()
    assert os.path.getsize(os.path.join(d, "report.png")) > 5000
    assert "latency b=1 (ms)" in md and "latency b=2 (ms)" in md and "dev acc" in md
    rep = read_json(os.path.join(d, "report.json"))
    by_w = {x["width"]: x for x in rep["rows"]}
    assert set(by_w[0.5]["latency_ms"]) == {"1", "2"} and "latency_ms" not in by_w[0.75]
    assert rep["teacher"]["params"] == 22722 and rep["teacher"]["latency_ms"]["2"] > 0
    assert rep["batch_size_plotted"] == 2 and by_w[0.75]["flops"] < by_w[1.0]["flops"]
    # --map overrides; an unknown name is one error line
    run_script("report.py", "--ofa_dir", d, "--benchmark", out + ".json", "--map", "teacher=1.0", "half=1/2",
               "--output_dir", str(tmp_path / "rep2"))
    rep2 = read_json(str(tmp_path / "rep2" / "report.json"))
    assert "latency_ms" in {x["width"]: x for x in rep2["rows"]}[1.0]
    assert "width-1.0 graph" in rep2["teacher"]["latency_note"]
    bad = run_script("report.py", "--ofa_dir", d, "--benchmark", out + ".json", "--map", "nobody=0.5", check=False)
    assert bad.returncode == 2 and [l for l in bad.stderr.splitlines() if l.startswith("error:")]
    bad = run_script("report.py", "--ofa_dir", str(tmp_path / "none"), check=False)
    assert bad.returncode == 2 and "error:" in bad.stderr


def test_report_covers_depth_and_keeps_int8_apart(tmp_path):
    """Rows of every (width, depth); each benchmarked model's latency goes to
    its own (width, depth) (recorded by export_model.py); an INT8 model is
    not the latency of the FP32 sub-network of its width."""
    from utils.report import build_ofa_report
    d = _fake_ofa_dir(str(tmp_path / "ofa"))
    table = read_json(os.path.join(d, "all_results.json"))
    for r in table["rows"]:
        r.update(depth=1.0, layers=[0, 1])
    table["rows"].append({"width": 0.5, "requested": 0.5, "depth": 0.5, "layers": [0], "heads": 2, "ffn": 32,
                          "params": None, "score": 0.88, "step": 20, "dir": "width_0.5000_depth_0.5000",
                          "results": {"dev": {"acc": 0.88}}})
    with open(os.path.join(d, "all_results.json"), "w") as f:
        json.dump(table, f)
    models = [{"name": "teacher", "width": 1.0}, {"name": "half", "width": 0.5, "depth": 1.0},
              {"name": "half_shallow", "width": 0.5, "depth": 0.5}, {"name": "half_int8", "width": 0.5, "int8": True}]
    ms = {"teacher": 10.0, "half": 6.0, "half_shallow": 3.5, "half_int8": 2.0}
    bench = {"settings": {"seq_len": 32, "repeats": 3}, "models": models,
             "rows": [{"model": m, "batch_size": 16, "median_ms": v, "precision": "INT8" if "int8" in m else "FP32"}
                      for m, v in ms.items()]}
    paths = build_ofa_report(d, bench=bench, bench_path="b.json")
    rep = read_json(paths["json"])
    rows = {(r["width"], r["depth"]): r for r in rep["rows"]}
    assert set(rows) == {(1.0, 1.0), (0.75, 1.0), (0.5, 1.0), (0.5, 0.5)}
    assert rows[(0.5, 1.0)]["latency_ms"] == {"16": 6.0} and rows[(0.5, 0.5)]["latency_ms"] == {"16": 3.5}
    assert rows[(0.5, 0.5)]["flops"] < rows[(0.5, 1.0)]["flops"] < rows[(1.0, 1.0)]["flops"]
    assert rep["teacher"]["latency_ms"] == {"16": 10.0}
    assert rows[(1.0, 1.0)]["latency_ms"] == {"16": 10.0} and "latency_ms" not in rows[(0.75, 1.0)]
    md = open(paths["md"]).read()
    assert "width 0.5000, depth 0.5000" in md and "| 0.5000 | 0.5000 |" in md
    assert "2.86x" in md                    # 10 / 3.5: the shallow half-width model's speed-up


@pytest.mark.skipif(paddle3(), reason="paddle 3 is the line that reads PIR programs")
def test_a_paddle3_model_on_paddle2_is_one_clear_error(tmp_path):
    from utils import analysis, inference
    from utils.errors import UserError
    prefix = str(tmp_path / "model")
    for ext in (".json", ".pdiparams"):   # what paddle 3's jit.save writes
        (tmp_path / ("model" + ext)).write_bytes(b"{}")
    for call in (lambda: inference.create_predictor(prefix), lambda: analysis.shape_from_static(prefix)):
        with pytest.raises(UserError, match="paddle 3 \\(PIR\\) program.*make PADDLE=3"):
            call()
