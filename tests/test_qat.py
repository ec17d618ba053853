"""Quantization-aware distillation (utils/qat.py, quantize.py --qat_steps)."""
import os

import numpy as np
import pytest

from helpers import paddle3, read_json, run_script, write_tiny_bert

int8_line = pytest.mark.skipif(paddle3(), reason="INT8 runs on the paddle 2.6.2 line only")


def tiny_model(tmp_path, seed=0, num_labels=2):
    import paddle
    from utils.modeling import load_model
    d = write_tiny_bert(str(tmp_path / f"bert{seed}"), seed=seed)
    paddle.seed(seed)
    model, tok, _ = load_model(d, task_type="classification", num_labels=num_labels, warn_unfinished=False)
    model.eval()
    return model, tok


def batches(n=4, b=8, t=12, seed=0):
    rng = np.random.RandomState(seed)
    out = []
    for _ in range(n):
        ids = rng.randint(5, 60, size=(b, t)).astype("int64")
        ids[:, 0] = 2
        ids[:, -1] = 3
        ids[: b // 2, t - 3:] = 0   # some padding
        out.append((ids, np.zeros_like(ids)))
    return out


def test_fake_quant_rounds_to_the_grid_clips_and_passes_gradients_straight_through():
    import paddle
    from utils.qat import fake_quant
    x = paddle.to_tensor(np.array([-3.0, -0.5, 0.0, 0.3, 0.9999, 2.5], "float32"), stop_gradient=False)
    y = fake_quant(x, 1.0)
    codes = y.numpy() * 127.0
    np.testing.assert_allclose(codes, np.round(codes), atol=1e-4)       # on the 8-bit grid
    np.testing.assert_allclose(y.numpy()[[0, -1]], [-1.0, 1.0])          # clipped at the scale
    assert abs(y.numpy()[3] - 0.3) <= 0.5 / 127 + 1e-7
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0, 1, 1, 1, 1, 0])   # identity inside, zero where clipped
    # a per-channel scale tensor quantizes each column on its own grid
    w = paddle.to_tensor(np.array([[0.5, 4.0], [-1.0, 2.0]], "float32"))
    s = paddle.to_tensor(np.array([[1.0, 4.0]], "float32"))
    np.testing.assert_allclose(fake_quant(w, s).numpy(), [[round(63.5) / 127, 4.0], [-1.0, round(63.5) / 127 * 4]],
                               rtol=1e-6)


def test_activation_scale_is_the_exact_percentile_over_every_batch():
    from utils.qat import _TopValues
    rng = np.random.RandomState(0)
    arrays = [rng.standard_cauchy(size=(4, 50, 30)).astype("float32") for _ in range(5)]
    arrays[2][0, 0, 0] = 1e6        # the outliers sit in one batch
    for p in (0.9999, 0.999, 0.99, 1.0):
        obs = _TopValues(p, len(arrays))
        for a in arrays:
            obs.add(a)
        allv = np.sort(np.abs(np.concatenate([a.ravel() for a in arrays])))
        t = obs.threshold()
        assert np.mean(allv <= t) >= p
        assert np.mean(allv < t) < p or t == allv[0]   # the smallest such value
        if p == 1.0:
            assert t == allv[-1]


def test_simulation_hooks_every_quantized_op_and_observing_changes_nothing(tmp_path):
    from utils import qat
    model, _ = tiny_model(tmp_path)
    data = batches()
    ref = [qat.forward(model, i, s).numpy() for i, s in data]
    sim = qat.FakeQuant(model, percent=0.9999)
    qat.calibrate(sim, model, data)
    roles = ["q", "k", "v", "out", "ffn1", "ffn2"]
    want = {(f"L{i}.{r}", 0) for i in range(2) for r in roles} | \
        {(f"L{i}.{p}", o) for i in range(2) for p in ("scores", "context") for o in (0, 1)}
    assert set(sim.scales) == want
    assert all(v > 0 for v in sim.scales.values())
    # softmax probabilities: the context product's first operand is at most 1
    assert sim.scales[("L0.context", 0)] <= 1.0
    sim.observe(1)
    np.testing.assert_allclose(qat.forward(model, *data[0], sim).numpy(), ref[0], atol=1e-6)
    sim.finish_observing()
    # quantized: close to FP32 but not equal; without the simulation the forward is FP32 again
    q = qat.forward(model, *data[0], sim).numpy()
    assert 0 < np.abs(q - ref[0]).max() < 0.2 * np.abs(ref[0]).max() + 0.05
    np.testing.assert_allclose(qat.forward(model, *data[0]).numpy(), ref[0], atol=1e-6)
    # a site kept FP32 is not simulated
    kept = qat.FakeQuant(model, fp32_sites=("L0.ffn2", "L1.scores"))
    qat.calibrate(kept, model, data)
    assert ("L0.ffn2", 0) not in kept.scales and ("L1.scores", 1) not in kept.scales
    assert len(kept.scales) == len(want) - 3


def test_distillation_brings_the_simulated_model_towards_fp32(tmp_path):
    import paddle
    from utils import qat
    teacher, _ = tiny_model(tmp_path)
    student, _ = tiny_model(tmp_path)
    data = batches(n=6, seed=1)
    sim = qat.FakeQuant(student, percent=0.9999)
    qat.calibrate(sim, student, data)
    # a tiny random model quantizes almost losslessly: clip every activation hard for an error to undo
    sim.scales = {k: v * 0.1 for k, v in sim.scales.items()}

    def gap():
        with paddle.no_grad():
            return float(np.mean([np.abs(qat.forward(student, i, s, sim).numpy()
                                         - qat.forward(teacher, i, s).numpy()).mean() for i, s in data]))
    before = gap()
    rec = qat.train(student, teacher, sim, data, "regression", 0, steps=40, learning_rate=1e-4)
    after = gap()
    assert after < 0.8 * before, (before, after)
    assert rec["steps"] == 40 and rec["loss_last"] < rec["loss_first"]
    # the teacher is untouched
    fresh, _ = tiny_model(tmp_path)
    np.testing.assert_allclose(qat.forward(teacher, *data[0]).numpy(), qat.forward(fresh, *data[0]).numpy())


def test_ner_distillation_counts_real_tokens_only_and_moves_towards_fp32(tmp_path):
    """For a tagger (quantize.py --qat_steps on an NER model) the divergence and
    the loss are over real tokens: what the teacher says at padding counts for
    nothing, and tuning brings the simulated tagger's per-token outputs towards
    FP32's."""
    import paddle
    from utils import qat
    from utils.losses import logit_loss
    from utils.modeling import load_model

    def tagger():
        d = write_tiny_bert(str(tmp_path / "bert"), seed=0)
        paddle.seed(0)
        m, _, _ = load_model(d, task_type="token_classification", num_labels=7, warn_unfinished=False)
        m.eval()
        return m
    teacher, student = tagger(), tagger()
    data = batches(n=6, seed=2)
    ids = data[0][0]
    real, pad = ids != 0, ids == 0
    assert pad.any() and real.any()
    t = qat.forward(teacher, *data[0])
    # flip the teacher's prediction at every padded position: no change in divergence or loss
    flipped = t.numpy().copy()
    flipped[pad] = -flipped[pad]
    flipped = paddle.to_tensor(flipped)
    assert qat.divergence("token_classification", flipped, t, ids, 0) == 0.0
    mask = paddle.to_tensor(real)
    same = float(logit_loss(t, t, "token_classification", mask))
    assert float(logit_loss(t, flipped, "token_classification", mask)) == pytest.approx(same, abs=1e-6)
    # one real token's prediction changed: 1 / (real tokens) of the predictions flipped
    one = t.numpy().copy()
    i, j = np.argwhere(real)[0]
    one[i, j] = 0.0
    one[i, j, (int(t.numpy()[i, j].argmax()) + 1) % 7] = 100.0
    assert qat.divergence("token_classification", paddle.to_tensor(one), t, ids, 0) == pytest.approx(1 / real.sum())

    sim = qat.FakeQuant(student, percent=0.9999)
    qat.calibrate(sim, student, data)
    sim.scales = {k: v * 0.1 for k, v in sim.scales.items()}   # clip hard: an error for the tuning to undo

    def gap():   # mean |difference| of the logits at real tokens
        with paddle.no_grad():
            return float(np.mean([np.abs(qat.forward(student, i_, s_, sim).numpy()
                                         - qat.forward(teacher, i_, s_).numpy())[i_ != 0].mean() for i_, s_ in data]))
    before = gap()
    rec = qat.train(student, teacher, sim, data, "token_classification", 0, steps=40, learning_rate=1e-3)
    assert gap() < 0.8 * before, (before, gap())
    assert rec["steps"] == 40 and rec["loss_last"] < rec["loss_first"]


@pytest.fixture(scope="module")
def exported(sst2_teacher, glue_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("qat")
    run_script("export_model.py", "--model_name_or_path", sst2_teacher, "--sub_model_output_dir", str(root / "dyn"),
               "--static_sub_model", str(root / "fp32" / "model"), "--data_dir", glue_data, "--max_seq_length", "32")
    return root, str(root / "dyn"), str(root / "fp32" / "model")


@int8_line
def test_quantize_with_qat_tunes_then_quantizes_and_judges_against_the_original(exported, glue_data):
    from utils import quant_ptq
    root, dyn, fp32 = exported
    # the simulated sites are the static program's quantized ops, named alike
    sites = [s["name"] for s in quant_ptq.quant_sites(fp32) if not s["head"]]
    assert sites == [f"L{i}.{r}" for i in range(2) for r in
                     ("q", "k", "v", "scores", "context", "out", "ffn1", "ffn2")]
    out = str(root / "int8" / "model")
    r = run_script("quantize.py", "--model_prefix", fp32, "--output_prefix", out, "--data_dir", glue_data,
                   "--batch_num", "4", "--batch_size", "16", "--qat_steps", "12", "--qat_model", dyn,
                   "--qat_learning_rate", "1e-4", "--skip_layers", "L0.ffn2,L1.scores", "--force")
    assert "quantization-aware distillation: 12 steps" in r.stdout
    info = read_json(out + ".info.json")
    q = info["quantization"]["qat"]
    # 2 layers x 10 quantized inputs, less the ops kept FP32 (the scores product has two inputs)
    assert q["steps"] == 12 and q["simulated_sites"] == 2 * 10 - 3 and q["check_max_abs_diff"] <= 1e-3
    assert info["quantization"]["fp32_sites"] == ["L0.ffn2", "L1.scores"]
    # ... and are FP32 in the INT8 program: the tuned model is a new export, its tensors have other names
    # than the original's, by which the ops kept FP32 are found
    names = [s["name"] for s in quant_ptq.quant_sites(fp32)]
    ops = quant_ptq.quant_sites(out)     # the same ops in the same order (names: by the FP32 program's)
    assert len(ops) == len(names)
    assert [n for n, s in zip(names, ops) if not any(".quantized" in a for a in s["acts"])] == \
        ["L0.ffn2", "L1.scores", "head0", "output"]
    onednn = info["quantization"]["onednn"]
    assert onednn["quantized_sites"] == 14 and onednn["int8_sites"] >= 12, onednn
    # the texts the guard reads were set aside: 240 training examples, none of them held out here but the
    # ones the guard's agreement pool takes
    held = info["quantization"]["texts"]["held_out"]
    assert q["texts"] <= 240 - held
    assert info["fp32_model"] == os.path.abspath(fp32)      # the guard's reference is the original model
    from utils.bench_report import int8_instructions
    assert info["quantization"]["cpu_int8_instructions"] == int8_instructions()
    assert not [n for n in os.listdir(root / "int8") if n.startswith(".quantize-")]   # no work dir left
    # the tuned weights are what was quantized: the same recipe without tuning gives other int8 weights
    plain = str(root / "plain" / "model")
    run_script("quantize.py", "--model_prefix", fp32, "--output_prefix", plain, "--data_dir", glue_data,
               "--batch_num", "4", "--batch_size", "16", "--skip_layers", "L0.ffn2,L1.scores", "--force")
    with open(out + ".pdiparams", "rb") as a, open(plain + ".pdiparams", "rb") as b:
        assert a.read() != b.read()
    assert "qat" not in read_json(plain + ".info.json")["quantization"] or \
        read_json(plain + ".info.json")["quantization"]["qat"] is None


@int8_line
def test_an_interrupted_tuning_resumes_to_the_same_int8_model(exported, glue_data, tmp_path):
    """Killed after step 5 of 12 (checkpoints every 5): a rerun without
    --resume, or with another flag, is refused and leaves the checkpoint as
    it was; --resume ends with the uninterrupted run's INT8 weights and
    removes the checkpoint."""
    root, dyn, fp32 = exported
    base = ["--model_prefix", fp32, "--data_dir", glue_data, "--batch_num", "4", "--batch_size", "16",
            "--qat_steps", "12", "--qat_model", dyn, "--qat_learning_rate", "1e-4", "--qat_save_steps", "5",
            "--skip_layers", "L0.ffn2", "--force"]
    whole = str(tmp_path / "whole" / "model")
    run_script("quantize.py", *base, "--output_prefix", whole)
    part = str(tmp_path / "part" / "model")
    r = run_script("quantize.py", *base, "--output_prefix", part, "--debug_qat_exit_after_step", "5", check=False)
    assert r.returncode == 3, r.stderr[-2000:]
    ckpt = part + ".qat"
    with open(os.path.join(ckpt, "checkpoints", "latest")) as f:
        assert f.read().strip() == "step-5"
    assert not os.path.exists(part + ".pdiparams")

    def snapshot():
        return sorted((os.path.relpath(os.path.join(d, n), ckpt), os.path.getmtime(os.path.join(d, n)))
                      for d, _, names in os.walk(ckpt) for n in names)
    before = snapshot()
    for extra, msg in [([], "add --resume to continue it"),
                       (["--resume", "--qat_learning_rate", "2e-4"], "--qat_learning_rate 0.0001 there, 0.0002 now")]:
        r = run_script("quantize.py", *base, "--output_prefix", part, *extra, check=False)
        err = r.stderr.strip().splitlines()
        assert r.returncode == 2 and err[-1].startswith("error: ") and msg in err[-1], (extra, r.stderr[-1500:])
        assert snapshot() == before and not os.path.exists(part + ".pdiparams")
    r = run_script("quantize.py", *base, "--output_prefix", part, "--resume")
    assert "resumed from step 5 of 12" in r.stdout + r.stderr
    assert "--resume: the interrupted run's recipe" in r.stdout
    with open(whole + ".pdiparams", "rb") as a, open(part + ".pdiparams", "rb") as b:
        assert a.read() == b.read()
    q = read_json(part + ".info.json")["quantization"]["qat"]
    assert q["resumed_from"] == 5 and q["steps"] == 12
    assert q["loss_first"] == read_json(whole + ".info.json")["quantization"]["qat"]["loss_first"]
    assert not os.path.exists(ckpt) and not os.path.exists(whole + ".qat")
    assert read_json(part + ".info.json")["quantization"]["fp32_sites"] == ["L0.ffn2"]


@int8_line
def test_qat_bad_input_is_one_line_and_exit_2(exported, glue_data, tmp_path):
    root, dyn, fp32 = exported
    other = write_tiny_bert(str(tmp_path / "other"), seed=7)
    base = ["--model_prefix", fp32, "--data_dir", glue_data, "--batch_num", "4", "--batch_size", "16"]
    cases = [(["--qat_steps", "5"], "--qat_steps needs --qat_model"),
             (["--qat_steps", "5", "--qat_model", str(tmp_path / "nope")], "not a directory"),
             (["--qat_steps", "-1"], "--qat_steps must be >= 0"),
             (["--qat_steps", "5", "--qat_model", other], "differ from --model_prefix")]
    for i, (extra, msg) in enumerate(cases):
        out = str(tmp_path / f"o{i}" / "model")
        r = run_script("quantize.py", *base, "--output_prefix", out, *extra, check=False)
        assert r.returncode == 2, (extra, r.stderr[-800:])
        assert msg in r.stderr, (extra, r.stderr[-800:])
        assert not os.path.exists(tmp_path / f"o{i}"), extra


def test_cpu_without_int8_instructions_is_named_in_the_benchmark_table():
    from utils.bench_report import NO_INT8_NOTE, format_table, int8_instructions
    amd = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx avx2 fma\n"
    xeon = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_vnni amx_int8\n"
    assert int8_instructions(amd) == []
    assert int8_instructions(xeon) == ["avx512_vnni", "amx_int8"]
    assert int8_instructions("processor\t: 0\n") is None          # no flags line: unknown, no note
    row = {"batch_size": 16, "model": "int8", "precision": "INT8", "params": None, "gflops_per_example": None,
           "median_ms": 1.0, "p90_ms": 1.0, "throughput": 1.0, "speedup": 1.0, "speedup_paired": 1.0,
           "flops_speedup": None, "measured_over_predicted": None}
    settings = {"paddle": "2.6.2", "device": "cpu", "cpu": "AMD EPYC", "threads": 2, "mkldnn": True,
                "trt_fp16": False, "seq_len": 128, "warmup": 1, "repeats": 1}
    models = [{"name": "int8"}]
    assert NO_INT8_NOTE in format_table(dict(settings, cpu_int8_instructions=[]), models, [row])
    assert NO_INT8_NOTE not in format_table(dict(settings, cpu_int8_instructions=["avx512_vnni"]), models, [row])
    assert NO_INT8_NOTE not in format_table(dict(settings, cpu_int8_instructions=[]), models,
                                            [dict(row, precision="FP32")])
