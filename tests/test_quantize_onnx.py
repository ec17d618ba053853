"""quantize.py (post-training INT8) and export_onnx.py on the tiny SST-2 teacher."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from helpers import REPO, model_ext, paddle3, pinned, read_json, run_script


@pytest.fixture(scope="module")
def fp32_static(sst2_teacher, glue_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("quant")
    run_script("export_model.py", "--model_name_or_path", sst2_teacher, "--sub_model_output_dir", str(root / "dyn"),
               "--static_sub_model", str(root / "fp32" / "model"), "--data_dir", glue_data, "--max_seq_length", "32")
    return root, str(root / "fp32" / "model")


# quantize.py refuses on paddle 3 (utils/quant_paddle3.py: no working INT8 path on that line)
int8_line = pytest.mark.skipif(paddle3(), reason="INT8 runs on the paddle 2.6.2 line only")


@pytest.fixture(scope="module")
def int8_model(fp32_static, glue_data):
    root, fp32 = fp32_static
    out = str(root / "int8" / "model")
    r = run_script("quantize.py", "--model_prefix", fp32, "--output_prefix", out, "--data_dir", glue_data,
                   "--batch_num", "4", "--batch_size", "16")
    return fp32, out, r


def dev_batch(glue_data, prefix, n=60):
    from utils import inference
    from utils.data import collate, encode, load_glue
    from utils.modeling import load_tokenizer
    from utils.tasks import get_task
    tok = load_tokenizer(os.path.join(os.path.dirname(prefix), inference.read_info(prefix)["tokenizer_dir"]))
    feats = encode(load_glue(get_task("SST-2"), glue_data, ("dev",))["dev"][:n], tok, 32)
    ids, seg, labels = collate(feats, tok.pad_token_id, False)
    return ids, seg, labels


@int8_line
def test_int8_model_is_written_beside_its_info_and_tokenizer(int8_model):
    fp32, out, r = int8_model
    for suffix in (model_ext(), ".pdiparams", ".info.json", "_tokenizer/vocab.txt"):
        assert os.path.exists(out + suffix), suffix
    info = read_json(out + ".info.json")
    fp32_info = read_json(fp32 + ".info.json")
    assert info["int8"] is True and info["tokenizer_dir"] == "model_tokenizer"
    for k in ("task_type", "task_name", "label_list", "max_seq_length"):
        assert info[k] == fp32_info[k], k
    q = info["quantization"]
    assert q["metric"] == "acc" and q["fp32"] >= 0.9 and q["drop"] <= 0.015 and not q["forced"]
    assert q["prediction_agreement"] >= 0.95
    assert q["calibration"]["algo"] == "hist" and q["calibration"]["examples"] == 64
    assert q["calibration"]["weight_quantize_type"] == "channel_wise_abs_max"
    assert "dev acc: FP32" in r.stdout and "INT8" in r.stdout
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["int8"] == q["int8"]
    # quantized weights are stored as int8 (the QDQ format): smaller parameter file
    assert summary["program"]["param_bytes_by_dtype"].get("int8", 0) > 0
    assert os.path.getsize(out + ".pdiparams") < os.path.getsize(fp32 + ".pdiparams")


@int8_line
def test_int8_program_really_is_quantized(int8_model, glue_data):
    """Would fail if quantization silently did nothing: the saved program holds
    quantize/dequantize ops and int8 weights of the encoder's matmuls, and the
    oneDNN INT8 predictor computes something measurably different from FP32
    while agreeing on the predictions."""
    from utils import inference
    from utils.quant_ptq import static_program
    fp32, out, _ = int8_model
    with static_program(out) as (program, scope):
        ops = [op.type for op in program.global_block().ops]
        matmul_weights = [n for op in program.global_block().ops if op.type == "dequantize_linear"
                          for n in op.input("X") if program.global_block().var(n).persistable]
        dtypes = {n: np.asarray(scope.find_var(n).get_tensor()).dtype for n in matmul_weights}
    assert ops.count("quantize_linear") >= 12 and ops.count("dequantize_linear") >= 12
    # 2 layers x (q, k, v, out, ffn1, ffn2) quantized; pooler and classifier stay FP32
    assert len(dtypes) == 12 and all(d == np.int8 for d in dtypes.values()), dtypes

    ids, seg, labels = dev_batch(glue_data, fp32)
    ref = inference.run_predictor(inference.create_predictor(fp32), ids, seg)
    pred = inference.create_predictor(out, int8=True)
    q8 = inference.run_predictor(pred, ids, seg)
    assert q8.shape == ref.shape
    # int8 arithmetic happened: measured 1.0e-04 from FP32, where two FP32 predictors differ by 1.8e-07
    assert np.abs(q8 - ref).max() > 1e-5
    assert np.mean(q8.argmax(-1) == ref.argmax(-1)) >= 0.95   # ... and predicts like FP32
    assert np.array_equal(q8, inference.run_predictor(pred, ids, seg))  # deterministic
    # without enable_mkldnn_int8 the same program runs in FP32 (dequantized weights)
    fp_mode = inference.run_predictor(inference.create_predictor(out, int8=False), ids, seg)
    assert np.abs(q8 - fp_mode).max() > 1e-5                  # measured 2.8e-05: the activations' rounding
    assert inference.run_predictor(pred, ids[:3, :9], seg[:3, :9]).shape == (3, 2)  # any shape runs


@int8_line
def test_the_info_says_which_quantized_ops_onednn_runs_in_int8(int8_model):
    """utils.quant_ptq.executed_int8 reads the predictor's optimized program:
    on paddle 2.6 oneDNN fuses the attention scores product (with its scale
    and mask add) into an FP32 matmul, and runs every other encoder op of the
    program in INT8; quantize.py prints and records it."""
    from utils.quant_ptq import executed_int8, quant_sites
    fp32, out, r = int8_model
    sites = quant_sites(fp32)
    body = sorted(s["name"] for s in sites if not s["head"])
    run = executed_int8(out, sites)
    assert sorted(n for n in run["int8"] + run["fp32"] if n in body) == body   # every encoder op found once
    assert sorted(n for n in run["fp32"] if n in body) == ["L0.scores", "L1.scores"]
    assert {"L0.q", "L0.context", "L1.out", "L1.ffn2"} <= set(run["int8"])
    assert not set(run["int8"]) & {s["name"] for s in sites if s["head"]}    # the head stays FP32
    o = read_json(out + ".info.json")["quantization"]["onednn"]
    assert o == {"int8_sites": 14, "quantized_sites": 16, "fp32_sites": ["L0.scores", "L1.scores"]}
    assert "oneDNN runs 14 of the 16 quantized encoder ops in INT8; in FP32" in r.stdout


@int8_line
def test_int8_fidelity_separates_the_program_from_the_kernels(int8_model, glue_data, tmp_path):
    """benchmarks/int8_fidelity.py: its "exact" run is the quantized program's
    own arithmetic (the same program dequantized by a predictor without
    oneDNN INT8 gives the same logits), its "real" run is the INT8 predictor
    as quantize.py's guard runs it, fetching inner tensors changes nothing,
    and the layer-0 kernel check compares against exact int8 arithmetic."""
    from helpers import script_module
    from utils import inference
    fp32, out, _ = int8_model
    res = script_module("benchmarks/int8_fidelity.py").main(
        ["--fp32", fp32, "--int8", out, "--data_dir", glue_data, "--examples", "40", "--output",
         str(tmp_path / "f.json")])
    assert res == read_json(str(tmp_path / "f.json"))
    assert res["examples"] == 40 and res["probe_logit_change"] < 1e-5
    ids, seg, _ = dev_batch(glue_data, fp32, n=40)
    deq = inference.run_predictor(inference.create_predictor(out, int8=False, mkldnn=False), ids, seg)
    q8 = inference.run_predictor(inference.create_predictor(out), ids, seg)
    ref = inference.run_predictor(inference.create_predictor(fp32), ids, seg)
    top = ref.argmax(-1)

    def margin_error(x):   # |change of the margin of FP32's top class over the best other class|
        def margin(y):
            return y[np.arange(len(y)), top] - np.where(np.arange(y.shape[1]) == top[:, None], -np.inf, y).max(1)
        return float(np.abs(margin(x) - margin(ref)).mean())
    assert res["exact"]["margin_error"] == pytest.approx(margin_error(deq), rel=1e-3, abs=1e-5)
    assert res["real"]["margin_error"] == pytest.approx(margin_error(q8), rel=1e-3, abs=1e-5)
    assert res["exact"]["margin_error"] != pytest.approx(res["real"]["margin_error"], rel=1e-3)
    assert res["exact"]["margin_error"] > 0 and res["real"]["margin_error"] > 0
    assert len(res["layers"]) == 5 and res["layers"][0]["exact"] == 0.0    # embeddings' LayerNorm: not quantized
    assert all(x["exact"] > 0 and x["real"] > 0 for x in res["layers"][1:])
    assert set(res["layer0_kernels"]) == {"L0.q", "L0.k", "L0.out"}
    for k in res["layer0_kernels"].values():
        assert 0 < k["exact_int8_vs_fp32"] < 0.2 and k["kernel_vs_exact_int8"] >= 0


@int8_line
def test_int8_flips_counts_each_models_flips_and_their_overlap(int8_model, glue_data, tmp_path):
    """benchmarks/int8_flips.py: per-model flips and margin error against the
    FP32 predictions, the flips shared by the models, near-ties, and the
    train split of --seen_dir; bad --int8 specs and missing files are one
    error line, exit 2, no output."""
    from helpers import script_module
    from utils import inference
    fp32, out, _ = int8_model
    mod = script_module("benchmarks/int8_flips.py")
    res = mod.main(["--fp32", fp32, "--data_dir", glue_data, "--seen_dir", glue_data, "--int8", f"a={out}",
                    f"self={fp32}", "--output", str(tmp_path / "f.json")])
    assert json.loads(json.dumps(res)) == read_json(str(tmp_path / "f.json"))
    ids, seg, _ = dev_batch(glue_data, fp32, n=10 ** 6)
    ref = inference.run_predictor(inference.create_predictor(fp32), ids, seg)
    q8 = inference.run_predictor(inference.create_predictor(out), ids, seg)
    flips = int((q8.argmax(-1) != ref.argmax(-1)).sum())
    u = res["unseen"]
    assert u["examples"] == len(ref) and u["runs"]["a"]["flips"] == flips
    assert u["runs"]["a"]["margin_error_p50"] > 0
    # the FP32 model against itself: no flips, no error, so no flip is shared by every model
    assert u["runs"]["self"] == {"flips": 0, "margin_error_p50": 0.0, "margin_error_p90": 0.0}
    assert u["overlap"]["union"] == flips and u["overlap"]["in_every_run"] == 0
    assert all(v["max_abs_logit_diff"] < 1e-4 for v in u["fp32_batching"].values())
    n_train = sum(1 for _ in open(os.path.join(glue_data, "SST-2", "train.tsv"))) - 1
    assert res["seen"]["examples"] == n_train != u["examples"]
    for bad, msg in ((["--int8", "a"], "expected NAME=PREFIX"),
                     (["--int8", f"a={out}", f"a={out}"], "given twice"),
                     (["--int8", "a=/nonexistent/model"], "no model file /nonexistent/model")):
        r = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "int8_flips.py"), "--fp32", fp32,
                            "--data_dir", glue_data, "--output", str(tmp_path / "bad.json"), *bad],
                           capture_output=True, text=True)
        assert r.returncode == 2 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not os.path.exists(tmp_path / "bad.json")


@int8_line
def test_accuracy_guard_refuses_unless_forced(fp32_static, glue_data, tmp_path):
    _, fp32 = fp32_static
    args = ["--model_prefix", fp32, "--data_dir", glue_data, "--batch_num", "1", "--batch_size", "8",
            "--max_drop", "-1"]  # any result "drops" more than -1
    out = tmp_path / "refused" / "static" / "model"      # two directories that do not exist yet
    r = run_script("quantize.py", *args, "--output_prefix", str(out), check=False)
    assert r.returncode == 1, r.stderr[-2000:]
    assert "nothing written" in r.stderr and "--max_drop" in r.stderr
    assert not (tmp_path / "refused").exists()
    r = run_script("quantize.py", *args, "--output_prefix", str(tmp_path / "forced" / "model"), "--force",
                   "--algo", "abs_max", "--weight_quantize_type", "abs_max")
    assert "anyway (--force)" in r.stdout + r.stderr
    info = read_json(str(tmp_path / "forced" / "model.info.json"))
    assert info["int8"] and info["quantization"]["forced"] and info["quantization"]["calibration"]["algo"] == "abs_max"


@int8_line
def test_bad_input_is_one_line_and_exit_2(fp32_static, glue_data, int8_model, tmp_path):
    _, fp32 = fp32_static
    out = str(tmp_path / "x" / "model")
    cases = [
        (["--model_prefix", str(tmp_path / "nope"), "--data_dir", glue_data], "nope"),
        (["--model_prefix", fp32, "--data_dir", str(tmp_path / "no_data")], "no_data"),
        (["--model_prefix", fp32, "--data_dir", glue_data, "--batch_num", "0"], "--batch_num"),
        (["--model_prefix", int8_model[1], "--data_dir", glue_data], "already an INT8 model"),
    ]
    for args, needle in cases:
        r = run_script("quantize.py", *args, "--output_prefix", out, check=False)
        assert r.returncode == 2 and needle in r.stderr, (args, r.stderr[-1500:])
        assert len([l for l in r.stderr.splitlines() if l.startswith("error:")]) == 1
    assert not (tmp_path / "x").exists()


def test_onnx_export_matches_paddle_inference(fp32_static, glue_data, tmp_path):
    import onnxruntime as ort
    from utils import inference
    _, fp32 = fp32_static
    onnx_file = str(tmp_path / "onnx" / "model.onnx")
    r = run_script("export_onnx.py", "--model_prefix", fp32, "--output", onnx_file, "--data_dir", glue_data)
    report = read_json(onnx_file + ".json")
    assert report["passed"] and report["max_abs_diff"] <= 1e-4 and report["examples"] == 60
    assert report["inputs"] == "dev data" and report["opset"] == 13 and report["paddle2onnx"] == pinned("paddle2onnx")
    assert "max |diff|" in r.stdout
    # independent of the script's check, on other shapes (dynamic batch and length)
    ids, seg, _ = dev_batch(glue_data, fp32, n=7)
    sess = ort.InferenceSession(onnx_file, providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input_ids": ids, "token_type_ids": seg})[0]
    ref = inference.run_predictor(inference.create_predictor(fp32, mkldnn=False), ids, seg)
    assert got.shape == ref.shape == (7, 2) and np.abs(got - ref).max() <= 1e-4


def test_quantize_on_paddle3_refuses_in_one_line(fp32_static, glue_data, tmp_path):
    from utils.errors import UserError
    from utils.quant_paddle3 import check_line
    check_line(major=2)
    with pytest.raises(UserError, match="paddle 2.6.2 line"):
        check_line(major=3)
    if not paddle3():
        return
    out = tmp_path / "int8" / "model"
    r = run_script("quantize.py", "--model_prefix", fp32_static[1], "--output_prefix", str(out), "--data_dir",
                   glue_data, check=False)
    assert r.returncode == 2 and "paddle 2.6.2 line" in r.stderr, r.stderr[-1500:]
    assert len([l for l in r.stderr.splitlines() if l.strip()]) == 1, r.stderr
    assert not (tmp_path / "int8").exists()


def marked_int8(fp32, root):
    """A copy of the FP32 static model whose info says INT8 (what export_onnx.py checks)."""
    import shutil
    from utils import inference
    src = os.path.dirname(fp32)
    shutil.copytree(src, str(root))
    prefix = os.path.join(str(root), os.path.basename(fp32))
    info = read_json(prefix + inference.INFO_SUFFIX)
    inference.write_info(prefix, dict(info, int8=True, fp32_model=fp32))
    return prefix


def test_onnx_export_refusals(fp32_static, tmp_path):
    _, fp32 = fp32_static
    # an impossible tolerance (checked on random token ids: no data given): exit 1, no file left
    out = tmp_path / "strict.onnx"
    r = run_script("export_onnx.py", "--model_prefix", fp32, "--output", str(out), "--tolerance", "0",
                   "--check_examples", "16", check=False)
    assert '"inputs": "random token ids"' in r.stdout
    if r.returncode == 0:  # bit-identical outputs are possible; then the check passed legitimately
        assert read_json(str(out) + ".json")["max_abs_diff"] == 0.0
    else:
        assert r.returncode == 1 and "not written" in r.stderr and not out.exists()
        assert not [p for p in os.listdir(tmp_path) if p.endswith(".onnx")]
    r = run_script("export_onnx.py", "--model_prefix", marked_int8(fp32, tmp_path / "int8"), "--output",
                   str(tmp_path / "q.onnx"),
                   check=False)
    assert r.returncode == 2 and "INT8" in r.stderr
    # onnxruntime missing: says how to install it
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "onnxruntime.py").write_text("raise ImportError('no onnxruntime here')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(shadow), REPO]))
    r = subprocess.run([sys.executable, os.path.join(REPO, "export_onnx.py"), "--model_prefix", fp32, "--output",
                        str(tmp_path / "m.onnx")], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert r.returncode == 2 and "pip install" in r.stderr and "onnxruntime" in r.stderr


def test_paddle2onnx_2x_never_runs_its_installing_optimizer(tmp_path, monkeypatch):
    """paddle2onnx 2.x's default optimize_tool (polygraphy) pip-installs packages during the
    conversion; convert() must pass onnxoptimizer whenever the installed version has the option."""
    import types
    from helpers import script_module
    seen = {}

    def export(model_filename, params_filename, save_file=None, opset_version=7, enable_optimize=True,
               optimize_tool="polygraphy"):
        seen.update(model=model_filename, optimize_tool=optimize_tool)
        with open(save_file, "wb") as f:
            f.write(b"onnx")

    monkeypatch.setitem(sys.modules, "paddle2onnx", types.SimpleNamespace(export=export, __version__="2.1.0"))
    for ext in (model_ext(), ".pdiparams"):
        (tmp_path / ("model" + ext)).write_bytes(b"x")
    out = str(tmp_path / "m.onnx")
    assert script_module("export_onnx.py").convert(str(tmp_path / "model"), out, 13) == "2.1.0"
    assert seen == {"model": str(tmp_path / ("model" + model_ext())), "optimize_tool": "onnxoptimizer"}


# --------------------------------------------------------------------------- the guard, the search, kept-FP32 ops
def aug_file(glue_data, tmp_path, n=200):
    """Unlabelled in-domain text (train_aug.tsv layout: a sentence column only)."""
    from helpers import sentence
    rng = np.random.RandomState(7)
    path = tmp_path / "train_aug.tsv"
    path.write_text("sentence\n" + "".join(sentence(rng, int(rng.randint(2))) + "\n" for _ in range(n)))
    return str(path)


@int8_line
def test_guard_reports_agreement_on_held_out_text_and_named_ops_stay_fp32(fp32_static, glue_data, tmp_path):
    from utils.quant_ptq import quant_sites, static_program
    _, fp32 = fp32_static
    sites = {s["name"]: s for s in quant_sites(fp32)}
    linears = [s["key"] for s in sites.values() if not s["head"] and s["key"].endswith(".w_0")]
    assert len(sites) == 18 and len(linears) == 12     # 2 layers x 8 matmuls, pooler, classifier
    out = str(tmp_path / "named" / "model")
    r = run_script("quantize.py", "--model_prefix", fp32, "--output_prefix", out, "--data_dir", glue_data,
                   "--batch_num", "2", "--agreement_file", aug_file(glue_data, tmp_path), "--agreement_examples",
                   "150", "--skip_layers", "L0.ffn2," + sites["L1.q"]["key"])   # a role name and a tensor name
    q = read_json(out + ".info.json")["quantization"]
    a = q["agreement"]
    assert a["examples"] == 60 + 150 and set(a["by_source"]) == {"dev", "held_out"}
    assert a["ci95"][0] <= a["value"] <= a["ci95"][1] and a["value"] >= q["min_agreement"] == 0.99
    assert q["texts"]["held_out"] == 150 and q["texts"]["search"] == 0 and q["texts"]["calibration"] == 32
    assert q["drop_ci95"][0] <= q["drop"] <= q["drop_ci95"][1]
    assert q["latency_ms"]["batch_size"] == 16 and q["latency_ms"]["int8"] > 0
    assert q["fp32_sites"] == ["L0.ffn2", "L1.q"] and q["search"] is None
    assert "agreement with FP32 (prediction_agreement)" in r.stdout and "held-out" in r.stdout
    # the two named Linear layers keep FP32 weights; the other 10 encoder Linears are int8
    with static_program(out) as (_, scope):
        dtypes = {n: np.asarray(scope.find_var(n).get_tensor()).dtype for n in linears}
    fp = sorted(n for n, d in dtypes.items() if d == np.float32)
    assert fp == sorted([sites["L0.ffn2"]["key"], sites["L1.q"]["key"]]), dtypes
    assert sum(d == np.int8 for d in dtypes.values()) == 10


@int8_line
def test_search_is_bounded_and_says_what_it_tried(fp32_static, glue_data, tmp_path):
    _, fp32 = fp32_static
    out = str(tmp_path / "searched" / "model")
    budget = 2
    r = run_script("quantize.py", "--model_prefix", fp32, "--output_prefix", out, "--data_dir", glue_data,
                   "--batch_num", "1", "--agreement_file", aug_file(glue_data, tmp_path), "--search_examples", "40",
                   "--agreement_examples", "100", "--search", "--search_algos", "hist", "abs_max",
                   "--skip_layers", "2", "--search_budget", budget)
    q = read_json(out + ".info.json")["quantization"]
    s = q["search"]
    tried = [l for l in r.stdout.splitlines() if l.strip().startswith("tried ")]
    assert len(tried) == len(s["tried"]) >= 1 and s["search_texts"] == 40
    assert s["not_tried"] and "not tried:" in r.stdout          # one trial takes more than the 2 s budget
    secs = [t["seconds"] for t in s["tried"]]
    assert sum(secs) <= budget + 2 * max(secs) + 5              # a trial starts only if the slowest fits
    assert all(0 <= t["agreement"] <= 1 for t in s["tried"])
    # recipes and kept-FP32 choices are timed; the one-op sensitivity trials are not
    assert all((t["latency_ms"] is None) == t["what"].startswith("only ") for t in s["tried"])
    assert all(t["latency_ms"] > 0 and t["speedup_vs_fp32"] > 0 for t in s["tried"] if t["latency_ms"])
    assert q["texts"]["search"] == 40 and q["texts"]["held_out"] == 100   # disjoint parts of the file
    best = max(s["tried"][:len([t for t in s["tried"] if not t["fp32_sites"] and not t["what"].startswith("only")])],
               key=lambda t: (t["agreement"], -t["divergence"]))
    assert q["calibration"]["algo"] == best["recipe"]["algo"]
    assert len(q["fp32_sites"]) <= 2 and all(n.startswith("L") for n in q["fp32_sites"])


@int8_line
def test_guard_bad_text_is_one_line_and_exit_2(fp32_static, glue_data, tmp_path):
    _, fp32 = fp32_static
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    pair = os.path.join(glue_data, "RTE", "train.tsv")       # the wrong task's columns
    out = str(tmp_path / "x" / "model")
    cases = [
        (["--agreement_file", str(empty)], "empty file"),
        (["--agreement_file", pair], "--agreement_file"),
        (["--agreement_file", aug_file(glue_data, tmp_path, n=30), "--agreement_examples", "100"], "fewer than"),
        (["--calibration_file", aug_file(glue_data, tmp_path, n=30), "--batch_num", "4"], "--calibration_file"),
        (["--agreement_examples", "5000"], "fewer than the 5000"),
        (["--skip_layers", "L0.ffn9"], "--skip_layers"),
        (["--min_agreement", "1.5"], "--min_agreement"),
    ]
    for args, needle in cases:
        r = run_script("quantize.py", "--model_prefix", fp32, "--data_dir", glue_data, "--output_prefix", out, *args,
                       check=False)
        assert r.returncode == 2 and needle in r.stderr, (args, r.stderr[-1500:])
        assert len([l for l in r.stderr.splitlines() if l.startswith("error:")]) == 1
    assert not (tmp_path / "x").exists()


@int8_line
def test_reused_scales_give_the_same_int8_model(fp32_static, tmp_path):
    """The search calibrates a recipe once and then only rewrites the program
    for other ops kept FP32: that must equal a full calibration with them."""
    from utils import inference, quant_ptq
    _, fp32 = fp32_static
    sites = {s["name"]: s for s in quant_ptq.quant_sites(fp32)}
    head = set(quant_ptq.head_skip(sites.values()))
    rng = np.random.RandomState(0)
    batches = [(rng.randint(5, 70, (8, 16)).astype("int64"), np.zeros((8, 16), "int64")) for _ in range(2)]
    feeds = ["input_ids", "token_type_ids"]
    ids = rng.randint(5, 70, (16, 20)).astype("int64")
    for algo in ("hist", "abs_max"):
        recipe = dict(algo=algo, batch_num=2, weight_quantize_type="channel_wise_abs_max", hist_percent=0.9999)
        skip = head | {sites["L0.q"]["key"], sites["L1.ffn2"]["key"]}
        store = {}
        quant_ptq.run_ptq(fp32, recipe, batches, feeds, str(tmp_path / algo / "record"), head, scales=store)
        assert store["threshold"] or store["var_threshold"]
        full = quant_ptq.run_ptq(fp32, recipe, batches, feeds, str(tmp_path / algo / "full"), skip)
        again = quant_ptq.run_ptq(fp32, recipe, batches, feeds, str(tmp_path / algo / "again"), skip, scales=store)
        with open(full + ".pdiparams", "rb") as f, open(again + ".pdiparams", "rb") as g:
            assert f.read() == g.read(), algo
        outs = [inference.run_predictor(inference.create_predictor(p, int8=True), ids, np.zeros_like(ids))
                for p in (full, again)]
        assert np.array_equal(outs[0], outs[1]), algo


@int8_line
def test_ops_kept_fp32_are_fp32_outputs_and_all(fp32_static, tmp_path):
    """paddle 2.6's QDQ export puts a quantize/dequantize pair on the output of
    every matmul it calibrated, kept-FP32 ones included; oneDNN then ran the
    attention output projections in INT8 although every op was kept FP32.
    With the pairs after FP32 ops removed, a program that keeps every op FP32
    computes what the FP32 model does, and no op runs INT8."""
    from utils import inference, quant_ptq
    _, fp32 = fp32_static
    sites = quant_ptq.quant_sites(fp32)
    every = {k for s in sites for k in ([s["key"]] + s["acts"])}
    rng = np.random.RandomState(0)
    batches = [(rng.randint(5, 70, (8, 16)).astype("int64"), np.zeros((8, 16), "int64")) for _ in range(2)]
    recipe = dict(algo="abs_max", batch_num=2, weight_quantize_type="channel_wise_abs_max", hist_percent=0.9999)
    none = quant_ptq.run_ptq(fp32, recipe, batches, ["input_ids", "token_type_ids"], str(tmp_path / "none"), every)
    assert quant_ptq.inspect_program(none)["quant_ops"] == {}   # every pair of this program was after an FP32 op
    assert quant_ptq.executed_int8(none, sites)["int8"] == []
    ids = rng.randint(5, 70, (16, 20)).astype("int64")
    ref = inference.run_predictor(inference.create_predictor(fp32, int8=False), ids, np.zeros_like(ids))
    out = inference.run_predictor(inference.create_predictor(none, int8=True), ids, np.zeros_like(ids))
    np.testing.assert_allclose(out, ref, atol=1e-5)
    # with ops quantized, the pairs after them stay (oneDNN chains INT8 through them); the head's goes
    part = quant_ptq.run_ptq(fp32, recipe, batches, ["input_ids", "token_type_ids"], str(tmp_path / "part"),
                             set(quant_ptq.head_skip(sites)))
    assert quant_ptq.inspect_program(part)["quant_ops"].get("quantize_linear", 0) > 0
    assert len(quant_ptq.executed_int8(part, sites)["int8"]) > 0
    with quant_ptq.static_program(part) as (program, _):
        ops = program.global_block().ops
        head_out = [op for op in ops if op.type in quant_ptq.QUANTIZABLE_OPS][-1].output_arg_names[0]
        assert not [op for op in ops if op.type == "quantize_linear" and op.input("X")[0] == head_out]
