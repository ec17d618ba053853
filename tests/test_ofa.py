"""run_glue_ofa.py: the recipe end to end, the teacher-once step, resume, bad input."""
import os

import numpy as np
import pytest

from conftest import FAST
from helpers import read_json, run_script, tiny_config, write_vocab

WIDTH_DIRS = ("width_1.0000", "width_0.7500", "width_0.5000")


def test_every_width_learns_and_each_has_a_checkpoint(sst2_ofa):
    out, r = sst2_ofa
    table = read_json(os.path.join(out, "all_results.json"))
    rows = {row["dir"]: row for row in table["rows"]}
    assert set(rows) == set(WIDTH_DIRS)
    for d in WIDTH_DIRS:
        assert rows[d]["score"] >= 0.85, rows[d]
        cfg = read_json(os.path.join(out, d, "config.json"))
        assert cfg["compression_suite"]["supernet"]["widths"] == [1.0, 0.75, 0.5]
    assert [rows[d]["heads"] for d in WIDTH_DIRS] == [4, 3, 2]
    assert [rows[d]["ffn"] for d in WIDTH_DIRS] == [64, 48, 32]
    assert rows["width_1.0000"]["params"] > rows["width_0.7500"]["params"] > rows["width_0.5000"]["params"]
    assert os.path.isfile(os.path.join(out, "final", "model.safetensors"))
    assert os.path.isfile(os.path.join(out, "importance.json"))
    # the fidelity check ran and passed, and the table was printed
    assert "reordered width-1.0 supernet vs teacher" in r.stdout
    assert "vs teacher" in r.stdout and "width_0.5000" in r.stdout
    evals = read_json(os.path.join(out, "results.json"))
    assert [e["step"] for e in evals] == [20, 40] and set(evals[0]["widths"]) == {"1.0000", "0.7500", "0.5000"}


def _tiny_teacher_and_batch(num_labels=2, dropout=0.0):
    import paddle
    from paddlenlp.transformers import BertConfig, BertForSequenceClassification
    paddle.seed(1)
    cfg = BertConfig(**tiny_config(num_labels=num_labels, hidden_dropout_prob=dropout,
                                   attention_probs_dropout_prob=dropout))
    teacher = BertForSequenceClassification(cfg)
    rng = np.random.RandomState(0)
    ids = rng.randint(5, cfg.vocab_size, size=(8, 20)).astype("int64")
    ids[:, 0], ids[:4, 15:] = 2, 0
    batch = (ids, np.zeros_like(ids), rng.randint(0, 2, size=8).astype("int64"))
    return teacher, cfg, batch



def _stage(teacher, cfg, widths, per_width):
    """The suite's stage, or with ``per_width`` the upstream recipe (the
    teacher once per width) as the benchmark runs it."""
    from benchmarks.bench_ofa_step import teacher_per_width_stage
    from utils.distill import OFADistill
    from utils.supernet import build_supernet
    ofa = build_supernet(teacher, widths)
    stage_class = teacher_per_width_stage() if per_width else OFADistill
    stage = stage_class(None, teacher, ofa, widths, None, cfg, "classification", None, None)
    return stage, ofa


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_teacher_once_per_batch_gives_the_upstream_losses_and_gradients(dropout):
    # with dropout, too: the student draws the same masks in both recipes
    # (the teacher runs in eval mode and draws none)
    from utils.parallel import reseed
    from utils.widths import snap_widths
    teacher, cfg, batch = _tiny_teacher_and_batch(dropout=dropout)
    widths = snap_widths([1.0, 0.75, 0.5, 0.25], 4, cfg.intermediate_size)
    results = []
    for per_width in (False, True):
        stage, ofa = _stage(teacher, cfg, widths, per_width)
        ofa.model.train()
        reseed(7)
        stage.step(batch, 0)
        grads = {p.name: p.grad.numpy().copy() for p in ofa.model.parameters() if p.grad is not None}
        results.append((stage.last_losses, grads))
    (l_once, g_once), (l_up, g_up) = results
    assert len(l_once) == 4
    np.testing.assert_allclose(np.array(l_once), np.array(l_up), rtol=1e-6, atol=1e-7)
    assert len(g_once) == len(g_up) > 0
    for a, b in zip(g_once.values(), g_up.values()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    # every width contributed: the losses differ between widths
    assert len({round(l[0], 6) for l in l_once}) == 4


def test_cpu_fast_paths_compute_the_stock_step(monkeypatch):
    """utils.elastic_forward's CPU fast paths (addmm linear layers, the padding mask
    expanded once, stride kernels off) against paddle's stock ops
    (``stock_ops``): the same OFA step, losses and gradients.  Dropout 0: the
    two draw their masks from different generators."""
    import contextlib
    import paddle
    from utils import elastic_forward
    from utils.widths import snap_widths
    teacher, cfg, batch = _tiny_teacher_and_batch()
    widths = snap_widths([1.0, 0.5], 4, cfg.intermediate_size)
    real = elastic_forward._addmm_linear
    calls = []

    def counting():
        calls.append(1)
        return real()

    monkeypatch.setattr(elastic_forward, "_addmm_linear", counting)
    results = []
    for stock in (False, True):
        calls.clear()
        stage, ofa = _stage(teacher, cfg, widths, False)
        ofa.model.train()
        with elastic_forward.stock_ops() if stock else contextlib.nullcontext():
            if stock:
                assert paddle.get_flags(["FLAGS_use_stride_kernel"])["FLAGS_use_stride_kernel"] is True
                assert not any(elastic_forward._FAST.values())
            stage.step(batch, 0)
        # fast: every encoder linear of teacher + 2 widths ran as addmm; stock: none
        assert len(calls) == (3 * 2 * 6 if not stock else 0)
        grads = {n: p.grad.numpy().copy() for n, p in ofa.model.named_parameters() if p.grad is not None}
        results.append((stage.last_losses, grads))
    assert paddle.get_flags(["FLAGS_use_stride_kernel"])["FLAGS_use_stride_kernel"] is False
    assert all(elastic_forward._FAST.values())
    (l_fast, g_fast), (l_stock, g_stock) = results
    np.testing.assert_allclose(np.array(l_fast), np.array(l_stock), rtol=1e-5, atol=1e-7)
    assert g_fast.keys() == g_stock.keys() and len(g_fast) > 0
    for k in g_fast:
        np.testing.assert_allclose(g_fast[k], g_stock[k], rtol=1e-4, atol=1e-6)


def test_teacher_runs_once_per_batch(monkeypatch):
    from utils import distill
    from utils.widths import snap_widths
    teacher, cfg, batch = _tiny_teacher_and_batch()
    widths = snap_widths([1.0, 0.5], 4, cfg.intermediate_size)
    stage, ofa = _stage(teacher, cfg, widths, False)
    calls = []
    real = distill.elastic_forward.forward

    def counting(model, *a, **k):
        calls.append(model is teacher)
        return real(model, *a, **k)

    monkeypatch.setattr(distill.elastic_forward, "forward", counting)
    stage.step(batch, 0)
    assert sum(calls) == 1 and len(calls) == 3


def test_masked_mse_is_a_per_example_mean_over_real_tokens():
    import paddle
    from utils.losses import masked_mse
    rng = np.random.RandomState(1)
    a, b = rng.randn(3, 6, 4).astype("float32"), rng.randn(3, 6, 4).astype("float32")
    mask = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0]])
    got = float(masked_mse(paddle.to_tensor(a), paddle.to_tensor(b), paddle.to_tensor(mask)))
    sq = ((a - b) ** 2).mean(-1)
    want = np.mean([sq[i][mask[i] == 1].mean() for i in range(3)])
    assert got == pytest.approx(float(want), rel=1e-6)
    assert float(masked_mse(paddle.to_tensor(a), paddle.to_tensor(b))) == \
        pytest.approx(float(((a - b) ** 2).mean()), rel=1e-6)
    ta = paddle.to_tensor(a, stop_gradient=False)
    masked_mse(ta, paddle.to_tensor(b), paddle.to_tensor(mask)).backward()
    n = mask.sum(-1)[:, None, None]
    want_grad = 2 * (a - b) * mask[:, :, None] / (n * a.shape[-1] * a.shape[0])
    np.testing.assert_allclose(ta.grad.numpy(), want_grad, rtol=1e-5, atol=1e-7)


def test_soft_cross_entropy_is_masked_to_real_tokens():
    import paddle
    from utils.losses import soft_cross_entropy
    rng = np.random.RandomState(0)
    s, t = rng.randn(2, 5, 3).astype("float32"), rng.randn(2, 5, 3).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0]])
    got = float(soft_cross_entropy(paddle.to_tensor(s), paddle.to_tensor(t), paddle.to_tensor(mask)))
    p = np.exp(t) / np.exp(t).sum(-1, keepdims=True)
    logq = s - np.log(np.exp(s).sum(-1, keepdims=True))
    ce = -(p * logq).sum(-1)
    assert got == pytest.approx(float(ce[mask == 1].mean()), rel=1e-5)
    s2 = s.copy()
    s2[mask == 0] = 100.0  # padding positions must not matter
    assert float(soft_cross_entropy(paddle.to_tensor(s2), paddle.to_tensor(t), paddle.to_tensor(mask))) == \
        pytest.approx(got, rel=1e-6)


def test_ofa_resume_reaches_the_same_result(tmp_path, glue_data, sst2_teacher):
    args = ["--task_name", "SST-2", "--model_name_or_path", sst2_teacher, "--data_dir", glue_data,
            "--max_steps", "20", "--save_steps", "10", "--learning_rate", "1e-3", "--width_mult_list", "1.0", "0.5",
            *FAST]
    full, cut = str(tmp_path / "full"), str(tmp_path / "cut")
    run_script("run_glue_ofa.py", *args, "--output_dir", full)
    r = run_script("run_glue_ofa.py", *args, "--output_dir", cut, "--debug_exit_after_step", "10", check=False)
    assert r.returncode == 3
    run_script("run_glue_ofa.py", *args, "--output_dir", cut, "--resume")
    from utils.modeling import read_state_dict
    for d in ("final", "width_0.5000"):
        a = read_state_dict(os.path.join(full, d, "model.safetensors"))
        b = read_state_dict(os.path.join(cut, d, "model.safetensors"))
        for k in a:
            np.testing.assert_allclose(a[k], b[k], atol=1e-6, err_msg=f"{d} {k}")
    assert read_json(os.path.join(full, "all_results.json"))["rows"][1]["score"] == \
        read_json(os.path.join(cut, "all_results.json"))["rows"][1]["score"]


def _bad(tmp_path, model, glue_data, *extra):
    out = tmp_path / "never"
    r = run_script("run_glue_ofa.py", "--task_name", "SST-2", "--model_name_or_path", model, "--data_dir",
                   glue_data, "--output_dir", str(out), "--max_steps", "2", *FAST, *extra, check=False)
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-3000:]
    errors = [l for l in r.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1, r.stderr[-3000:]
    assert not out.exists()
    return errors[0]


def test_bad_widths_and_wrong_teacher_are_refused(tmp_path, glue_data, sst2_teacher):
    # an empty list is refused by the argument parser (exit 2, names the flag)
    r = run_script("run_glue_ofa.py", "--task_name", "SST-2", "--model_name_or_path", sst2_teacher, "--data_dir",
                   glue_data, "--output_dir", str(tmp_path / "never"), "--width_mult_list", check=False)
    assert r.returncode == 2 and "--width_mult_list" in r.stderr and not (tmp_path / "never").exists()
    assert "abc" in _bad(tmp_path, sst2_teacher, glue_data, "--width_mult_list", "abc")
    msg = _bad(tmp_path, sst2_teacher, glue_data, "--width_mult_list", "1.0", "1.5")
    assert "1.5" in msg and "--width_mult_list" in msg
    msg = _bad(tmp_path, sst2_teacher, glue_data, "--width_mult_list", "1.0", "0")
    assert "--width_mult_list" in msg
    msg = _bad(tmp_path, sst2_teacher, glue_data, "--width_mult_list", "1.0", "0.1")
    assert "head" in msg
    # a classifier of another task is not a teacher for SST-2
    from paddlenlp.transformers import BertConfig, BertForSequenceClassification
    other = tmp_path / "other"
    m = BertForSequenceClassification(BertConfig(**tiny_config(num_labels=3)))
    m.config.compression_suite = {"task_type": "classification", "task_name": "MNLI"}
    m.save_pretrained(str(other))
    write_vocab(str(other / "vocab.txt"))
    assert "MNLI" in _bad(tmp_path, str(other), glue_data)
    # a pre-trained encoder without a fine-tuned head is not a teacher either
    from helpers import write_tiny_bert
    enc = write_tiny_bert(str(tmp_path / "enc"))
    assert "head" in _bad(tmp_path, enc, glue_data)


def test_depth_layers_follow_the_dynabert_paper():
    from utils.widths import depth_layers
    from utils.errors import UserError
    assert depth_layers(12, 0.5) == [0, 2, 4, 6, 8, 10]      # PaddleNLP would keep 1, 3, 5, ...
    assert depth_layers(12, 0.75) == [0, 1, 2, 4, 5, 6, 8, 9, 10]
    assert depth_layers(6, "1/2") == [0, 2, 4] and depth_layers(4, 1.0) == [0, 1, 2, 3]
    for bad in (0, 1.5, 0.01):
        with pytest.raises(UserError):
            depth_layers(12, bad)


def test_width_and_depth_subnetworks_train_and_export(tmp_path, glue_data, sst2_teacher):
    out = str(tmp_path / "ofa")
    run_script("run_glue_ofa.py", "--task_name", "SST-2", "--model_name_or_path", sst2_teacher, "--data_dir",
               glue_data, "--output_dir", out, "--max_steps", "20", "--save_steps", "20", "--learning_rate", "1e-3",
               "--width_mult_list", "1.0", "1/2", "--depth_mult_list", "1.0", "0.5", *FAST)
    rows = read_json(os.path.join(out, "all_results.json"))["rows"]
    got = {(r["width"], r["depth"]): r for r in rows}
    assert set(got) == {(1.0, 1.0), (0.5, 1.0), (1.0, 0.5), (0.5, 0.5)}
    assert got[(0.5, 0.5)]["layers"] == [0] and got[(1.0, 1.0)]["layers"] == [0, 1]
    assert got[(0.5, 0.5)]["params"] < got[(0.5, 1.0)]["params"] < got[(1.0, 1.0)]["params"]
    src = os.path.join(out, "width_0.5000_depth_0.5000")
    assert read_json(os.path.join(src, "config.json"))["compression_suite"]["supernet"]["depths"] == [1.0, 0.5]
    run_script("export_model.py", "--model_name_or_path", src, "--width_mult", "0.5", "--depth_mult", "0.5",
               "--sub_model_output_dir", str(tmp_path / "dyn"), "--static_sub_model", str(tmp_path / "st" / "m"),
               "--data_dir", glue_data, "--max_seq_length", "32")
    info = read_json(str(tmp_path / "dyn" / "export_info.json"))
    assert info["kept_layers"] == [0] and info["num_layers"] == 1 and info["check"]["passed"]
    cfg = read_json(str(tmp_path / "dyn" / "config.json"))
    assert cfg["num_hidden_layers"] == 1 and cfg["compression_suite"]["kept_layers"] == [0]
    # any trained (width, depth) pair exports from final/ too; a depth that was not trained is refused
    r = run_script("export_model.py", "--model_name_or_path", os.path.join(out, "final"), "--width_mult", "1.0",
                   "--depth_mult", "0.5", "--sub_model_output_dir", str(tmp_path / "dyn2"), check=False)
    assert r.returncode == 0 and read_json(str(tmp_path / "dyn2" / "export_info.json"))["kept_layers"] == [0]
    r = run_script("export_model.py", "--model_name_or_path", sst2_teacher, "--depth_mult", "0.5",
                   "--sub_model_output_dir", str(tmp_path / "dyn3"), check=False)
    assert r.returncode == 2 and "was not trained" in r.stderr and not (tmp_path / "dyn3").exists()


def test_an_unlabelled_batch_distils_exactly_as_the_labelled_one():
    # augmented text carries no labels; the OFA loss never reads them
    from utils.parallel import reseed
    from utils.widths import snap_widths
    teacher, cfg, batch = _tiny_teacher_and_batch(dropout=0.1)
    widths = snap_widths([1.0, 0.5], 4, cfg.intermediate_size)
    losses = []
    for b in (batch, (batch[0], batch[1], None)):
        stage, ofa = _stage(teacher, cfg, widths, False)
        ofa.model.train()
        reseed(3)
        stage.step(b, 0)
        losses.append(stage.last_losses)
    assert len(losses[0]) == 2
    np.testing.assert_allclose(np.array(losses[0]), np.array(losses[1]), rtol=1e-6)


def _aug_data(tmp_path, glue_data, n_aug, labelled_rows=False):
    import shutil
    from helpers import sentence
    d = tmp_path / "glue_aug"
    shutil.copytree(os.path.join(glue_data, "SST-2"), d / "SST-2")
    rng = np.random.RandomState(9)
    with open(d / "SST-2" / "train_aug.tsv", "w") as f:
        f.write("sentence\tlabel\n" if labelled_rows else "sentence\n")
        for _ in range(n_aug):
            f.write(sentence(rng, int(rng.randint(2))) + ("\tnot-a-label\n" if labelled_rows else "\n"))
    return str(d)


@pytest.mark.parametrize("how", ["--data_aug", "--aug_file"])
def test_augmented_text_is_distilled_in_every_epoch(tmp_path, glue_data, sst2_teacher, monkeypatch, how):
    """--data_aug (DynaBERT's flag, DATA_DIR/TASK/train_aug.tsv) and --aug_file:
    one epoch visits every training and every augmented example once, the
    augmented batches are unlabelled, and the table records the counts.  A
    label column in the augmented file is ignored (here it holds no label)."""
    from helpers import run_in_process, script_module
    from utils import distill
    data = _aug_data(tmp_path, glue_data, 70, labelled_rows=how == "--aug_file")
    seen = []
    real = distill.OFADistill.step

    def recording(self, batch, step):
        seen.append((len(batch[0]), batch[2] is None))
        return real(self, batch, step)

    monkeypatch.setattr(distill.OFADistill, "step", recording)
    script_module("run_glue_ofa.py")
    out = tmp_path / "ofa"
    extra = ["--data_aug"] if how == "--data_aug" else ["--aug_file", os.path.join(data, "SST-2", "train_aug.tsv")]
    run_in_process("run_glue_ofa.py", "--task_name", "SST-2", "--model_name_or_path", sst2_teacher, "--data_dir",
                   data, "--output_dir", out, "--num_train_epochs", "1", "--learning_rate", "1e-3",
                   "--width_mult_list", "1.0", "0.5", *FAST, *extra)
    info = read_json(out / "all_results.json")["training_data"]
    assert info["train"] == 216 and info["importance"] == 24 and info["augmented"] == 70
    assert info["aug_file"] == os.path.abspath(os.path.join(data, "SST-2", "train_aug.tsv"))
    assert sum(n for n, _ in seen) == 216 + 70 and len(seen) == -(-(216 + 70) // 16)
    assert all(unlabelled for _, unlabelled in seen)


def test_bad_augmented_data_is_refused(tmp_path, glue_data, sst2_teacher):
    msg = _bad(tmp_path, sst2_teacher, glue_data, "--data_aug")
    assert msg.startswith("error: --data_aug: ") and "train_aug.tsv: file not found" in msg
    msg = _bad(tmp_path, sst2_teacher, glue_data, "--aug_file", str(tmp_path / "nope.tsv"))
    assert "--aug_file" in msg and "nope.tsv: file not found" in msg
    bad = tmp_path / "bad.tsv"
    bad.write_text("sentence\ngood words\none\ttoo many\n")
    msg = _bad(tmp_path, sst2_teacher, glue_data, "--aug_file", str(bad))
    assert f"{bad}:3:" in msg and "columns" in msg
    bad.write_text("text\nno sentence column here\n")
    msg = _bad(tmp_path, sst2_teacher, glue_data, "--aug_file", str(bad))
    assert f"{bad}:1:" in msg and "'sentence'" in msg
    msg = _bad(tmp_path, sst2_teacher, glue_data, "--data_aug", "--aug_file", str(bad))
    assert "--data_aug" in msg and "--aug_file" in msg
