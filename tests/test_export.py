"""export_model.py and predict.py on the tiny OFA supernet."""
import json
import os

import numpy as np
import pytest

from helpers import model_ext, read_json, run_script


@pytest.fixture(scope="module")
def exported(sst2_ofa, glue_data, tmp_path_factory):
    out, _ = sst2_ofa
    root = tmp_path_factory.mktemp("export")
    r = run_script("export_model.py", "--model_name_or_path", os.path.join(out, "width_0.5000"),
                   "--width_mult", "1/2", "--sub_model_output_dir", str(root / "dyn"),
                   "--static_sub_model", str(root / "static" / "model"), "--data_dir", glue_data,
                   "--max_seq_length", "32")
    return out, root, r


def test_export_writes_both_models_and_its_info(exported):
    _, root, r = exported
    info = read_json(str(root / "dyn" / "export_info.json"))
    assert info["width"] == 0.5 and info["heads_per_layer"] == [2, 2] and info["ffn_per_layer"] == [32, 32]
    assert info["params_after"] < info["params_before"]
    assert info["check"]["passed"] and info["check"]["max_abs_diff"] <= 1e-4 and info["check"]["examples"] == 60
    for k in ("dynamic_vs_supernet", "static_vs_dynamic", "static_vs_supernet"):
        assert k in info["check"]
    for f in ("model" + model_ext(), "model.pdiparams", "model.info.json", "model_tokenizer/vocab.txt"):
        assert (root / "static" / f).exists(), f
    assert info["static_model_bytes"] > 0 and info["dynamic_model_bytes"] > 0
    assert "static_vs_supernet" in r.stdout + r.stderr


def test_exported_model_equals_the_supernet_on_its_own(exported, glue_data):
    """Independent of the script's own check: reload strictly, run the static
    model with Paddle Inference, compare with the supernet at width 0.5."""
    import paddle
    from utils import inference
    from utils.elastic_forward import forward
    from utils.supernet import build_supernet, set_width
    from utils.widths import snap_widths
    from utils.data import collate, encode, load_glue
    from utils.modeling import load_model
    from utils.tasks import get_task
    out, root, _ = exported
    sub, tok, cfg = load_model(str(root / "dyn"))
    assert cfg.compression_suite["heads_per_layer"] == [2, 2]
    assert sub.bert.encoder.layers[0].self_attn.q_proj.weight.shape == [32, 16]
    assert sub.bert.encoder.layers[0].self_attn.num_heads == 2
    full, _, _ = load_model(os.path.join(out, "width_0.5000"))
    ofa = build_supernet(full, snap_widths([1.0, 0.5], 4, 64))
    ofa.model.eval()
    sub.eval()
    w = snap_widths([0.5], 4, 64)[0]
    set_width(ofa, w)
    feats = encode(load_glue(get_task("SST-2"), glue_data, ("dev",))["dev"][:20], tok, 32)
    ids, seg, _ = collate(feats, tok.pad_token_id, False)
    with paddle.no_grad():
        ref = forward(ofa.model, paddle.to_tensor(ids), paddle.to_tensor(seg)).numpy()
        dyn = sub(paddle.to_tensor(ids), token_type_ids=paddle.to_tensor(seg)).numpy()
    pred = inference.create_predictor(str(root / "static" / "model"))
    static = inference.run_predictor(pred, ids, seg)
    assert np.abs(dyn - ref).max() <= 1e-5
    assert np.abs(static - ref).max() <= 1e-4
    # any batch size and sequence length run
    assert inference.run_predictor(pred, ids[:3, :7], seg[:3, :7]).shape == (3, 2)
    # the full width differs: the exported model really is the half-width network
    set_width(ofa, snap_widths([1.0], 4, 64)[0])
    with paddle.no_grad():
        assert np.abs(forward(ofa.model, paddle.to_tensor(ids), paddle.to_tensor(seg)).numpy() - ref).max() > 1e-3


def test_pruned_checkpoint_into_a_full_size_model_fails_loudly(exported, tmp_path):
    from utils.errors import UserError
    from utils.modeling import load_model
    _, root, _ = exported
    import shutil
    bad = tmp_path / "bad"
    shutil.copytree(str(root / "dyn"), str(bad))
    cfg = read_json(str(bad / "config.json"))
    del cfg["compression_suite"]["heads_per_layer"], cfg["compression_suite"]["ffn_per_layer"]
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="does not fit"):
        load_model(str(bad))
    cfg["hidden_size"] = 48  # a checkpoint of another model
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="does not fit"):
        load_model(str(bad))


def test_untrained_width_is_refused_unless_forced(sst2_ofa, glue_data, tmp_path):
    out, _ = sst2_ofa
    args = ["--model_name_or_path", os.path.join(out, "final"), "--data_dir", glue_data, "--max_seq_length", "32",
            "--sub_model_output_dir", str(tmp_path / "dyn")]
    r = run_script("export_model.py", *args, "--width_mult", "0.25", check=False)
    assert r.returncode == 2 and "was not trained" in r.stderr and "0.7500" in r.stderr
    assert not (tmp_path / "dyn").exists()
    r = run_script("export_model.py", *args, "--width_mult", "0.25", "--force")
    assert "exporting anyway" in r.stdout + r.stderr
    info = read_json(str(tmp_path / "dyn" / "export_info.json"))
    assert info["heads_per_layer"] == [1, 1] and info["check"]["passed"]
    # --static_sub_model omitted: no static model anywhere
    assert "static_model" not in info
    assert not [f for _, _, fs in os.walk(tmp_path) for f in fs if f.endswith((".pdmodel", ".pdiparams"))]


def test_export_of_a_plain_model_only_at_full_width(sst2_teacher, tmp_path):
    args = ["--model_name_or_path", sst2_teacher, "--sub_model_output_dir", str(tmp_path / "dyn"),
            "--max_seq_length", "32"]
    r = run_script("export_model.py", *args, "--width_mult", "0.5", check=False)
    assert r.returncode == 2 and "not an OFA checkpoint" in r.stderr
    r = run_script("export_model.py", *args, "--static_sub_model", str(tmp_path / "st" / "teacher"))
    assert "vocabulary words" in r.stdout + r.stderr  # no data given: says what it checked on
    assert (tmp_path / "st" / ("teacher" + model_ext())).exists()
    assert read_json(str(tmp_path / "dyn" / "export_info.json"))["params_after"] == \
        read_json(str(tmp_path / "dyn" / "export_info.json"))["params_before"]


def test_predict_writes_labelled_predictions(exported, tmp_path):
    _, root, _ = exported
    inp = tmp_path / "in.txt"
    inp.write_text("w1 good w2 nice\nw3 bad w4 awful\n\nw5 w6 great\n")
    out = tmp_path / "pred.tsv"
    r = run_script("predict.py", "--model_prefix", str(root / "static" / "model"), "--input_file", str(inp),
                   "--output_file", str(out), "--batch_size", "2")
    rows = [l.split("\t") for l in out.read_text().splitlines()]
    assert [r_[0] for r_ in rows] == ["1", "0", "1"]
    assert all(0.5 <= float(r_[1]) <= 1.0 for r_ in rows) and rows[1][2] == "w3 bad w4 awful"
    assert "predict" in r.stderr  # progress bar
    r = run_script("predict.py", "--model_prefix", str(root / "static" / "model"), "--input_file",
                   str(tmp_path / "missing.txt"), "--output_file", str(tmp_path / "x.tsv"), check=False)
    assert r.returncode == 2 and "missing.txt" in r.stderr and not (tmp_path / "x.tsv").exists()


def test_export_check_failure_exits_nonzero_and_writes_nothing(sst2_ofa, glue_data, tmp_path, monkeypatch, capsys):
    """If the static model disagreed with the supernet (a patch leaking into
    the graph, a wrong slice), the export must fail and leave nothing."""
    import export_model
    from utils import inference
    out, _ = sst2_ofa
    real = inference.run_predictor
    monkeypatch.setattr(inference, "run_predictor", lambda *a, **k: real(*a, **k) + 1e-3)
    with pytest.raises(SystemExit) as e:
        export_model.main(["--model_name_or_path", os.path.join(out, "width_0.5000"), "--width_mult", "1/2",
                           "--sub_model_output_dir", str(tmp_path / "new" / "dyn"), "--data_dir", glue_data,
                           "--static_sub_model", str(tmp_path / "new" / "st" / "model"), "--max_seq_length", "32"])
    assert "export check failed" in str(e.value) and "static_vs_supernet=1.0" in str(e.value)
    assert "nothing written" in str(e.value)
    assert os.listdir(tmp_path) == []       # not even the directories it made for the output


def test_pruned_export_refuses_paddlenlp_from_pretrained(exported):
    """PaddleNLP's from_pretrained cannot build pruned shapes: with the
    weights under paddlenlp's file name it would skip them and predict
    garbage (PaddleNLP #1466); it must fail instead.  The suite loads them."""
    from paddlenlp.transformers import BertForSequenceClassification
    from utils.modeling import load_model
    _, root, _ = exported
    assert sorted(f for f in os.listdir(root / "dyn") if "model" in f) == ["model.pruned.safetensors"]
    with pytest.raises(OSError, match="model_state.pdparams"):
        BertForSequenceClassification.from_pretrained(str(root / "dyn"))
    assert load_model(str(root / "dyn"))[0].bert.encoder.layers[0].linear1.weight.shape == [32, 32]
