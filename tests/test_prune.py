"""prune.py / utils/pruning.py on a tiny BERT fine-tuned here (3 layers, 4
heads of 8, FFN 64): shapes, the numerical identity "cut model == original
with the pruned units masked out", global ranking, iterative rounds, the
output_proj score, re-fine-tuning with run_glue.py, vocabulary pruning,
the report, and bad input."""
import utils  # noqa: F401

import json
import os

import numpy as np
import pytest

from helpers import run_script, write_sst2, write_tiny_bert

import prune
from utils.errors import run_main

L, H, I = 3, 4, 64
FAST = ["--max_seq_length", "32", "--batch_size", "16", "--device", "cpu"]


def _ids(tokenizer, texts, pad_id):
    enc = [tokenizer(t)["input_ids"] for t in texts]
    width = max(len(e) for e in enc)
    ids = np.full((len(enc), width), pad_id, dtype="int64")
    for i, e in enumerate(enc):
        ids[i, :len(e)] = e
    return ids


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(root, data_dir, teacher dir): the tiny BERT fine-tuned in-process for 40 steps."""
    import paddle
    import paddle.nn.functional as F
    from utils.data import collate, encode, load_glue
    from utils.modeling import load_model, save_model
    from utils.tasks import get_task
    root = tmp_path_factory.mktemp("prune")
    data = str(root / "glue")
    write_sst2(os.path.join(data, "SST-2"))
    bert = write_tiny_bert(str(root / "bert"), num_hidden_layers=L)
    paddle.seed(0)
    model, tok, _ = load_model(bert, "classification", 2)
    task = get_task("SST-2")
    feats = encode(load_glue(task, data, ["train"])["train"], tok, 32)
    opt = paddle.optimizer.Adam(learning_rate=2e-3, parameters=model.parameters())
    model.train()
    rng = np.random.RandomState(0)
    for _ in range(40):
        ids, seg, y = collate([feats[i] for i in rng.choice(len(feats), 16)], tok.pad_token_id, False)
        loss = F.cross_entropy(model(paddle.to_tensor(ids), token_type_ids=paddle.to_tensor(seg)),
                               paddle.to_tensor(y))
        loss.backward()
        opt.step()
        opt.clear_grad()
    teacher = str(root / "teacher")
    save_model(model, tok, teacher, {"task_type": "classification", "task_name": "SST-2", "label_list": ["0", "1"]})
    return root, data, teacher


def _prune(setup, out, *extra):
    root, data, teacher = setup
    return prune.main(["--model_name_or_path", teacher, "--output_dir", str(out), "--task_name", "SST-2",
                       "--data_dir", data, *FAST, *extra])


def _dev_batches(setup, tokenizer):
    from utils.data import collate, encode, load_glue
    from utils.tasks import get_task
    feats = encode(load_glue(get_task("SST-2"), setup[1], ["dev"])["dev"], tokenizer, 32)
    return [collate(feats[i:i + 20], tokenizer.pad_token_id, False)[:2] for i in range(0, len(feats), 20)]


def _masked_reference(teacher, kept_heads, kept_neurons, batches):
    """Logits of the ORIGINAL model with a head mask that is zero on the pruned
    heads and the pruned FFN neurons' output rows zeroed."""
    import paddle
    from utils.elastic_forward import forward
    from utils.modeling import load_model
    model, _, _ = load_model(teacher)
    model.eval()
    mask = np.zeros([L, H], dtype="float32")
    for l, kh in enumerate(kept_heads):
        mask[l, kh] = 1
    for layer, kn in zip(model.bert.encoder.layers, kept_neurons):
        w = layer.linear2.weight.numpy()
        dead = np.setdiff1d(np.arange(w.shape[0]), kn)
        w[dead, :] = 0
        layer.linear2.weight.set_value(w)
    head_mask = paddle.to_tensor(mask)
    with paddle.no_grad():
        return [forward(model, paddle.to_tensor(i), paddle.to_tensor(s), head_mask=head_mask).numpy()
                for i, s in batches]


def _check_cut_equals_masked(setup, out_dir, info):
    import paddle
    from utils.modeling import layer_shapes, load_model
    pruned, tok, _ = load_model(str(out_dir))          # strict
    pruned.eval()
    heads, ffn = layer_shapes(pruned)
    kh, kn = info["structured"]["kept_heads"], info["structured"]["kept_neurons"]
    assert heads == [len(k) for k in kh] and ffn == [len(k) for k in kn]
    batches = _dev_batches(setup, tok)
    with paddle.no_grad():
        got = [pruned(paddle.to_tensor(i), token_type_ids=paddle.to_tensor(s)).numpy() for i, s in batches]
    ref = _masked_reference(setup[2], kh, kn, batches)
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, atol=1e-5)
    # Control: masking other units gives other logits (the check can fail).
    other_h = [sorted({(k + 1) % H for k in ks}) for ks in kh]
    wrong = _masked_reference(setup[2], other_h, kn, batches)
    assert max(float(np.abs(g - w).max()) for g, w in zip(got, wrong)) > 1e-3
    return heads, ffn


def test_even_pruning_exact_shapes_and_masked_identity(setup, tmp_path):
    out = tmp_path / "even"
    report = _prune(setup, out, "--target_num_of_heads", "2", "--target_ffn_size", "16")
    info = json.load(open(out / "prune_info.json"))
    heads, ffn = _check_cut_equals_masked(setup, out, info)
    assert heads == [2] * L and ffn == [16] * L
    cfg = json.load(open(out / "config.json"))["compression_suite"]
    assert cfg["heads_per_layer"] == [2] * L and cfg["ffn_per_layer"] == [16] * L
    assert info["before"]["heads_per_layer"] == [H] * L and info["after"]["ffn_per_layer"] == [16] * L
    assert info["after"]["params"]["total"] < info["before"]["params"]["total"]
    assert info["after"]["params"]["attention"] < info["before"]["params"]["attention"]
    assert info["after"]["files"]["weights_bytes"] < info["before"]["files"]["weights_bytes"]
    assert report["check_reload"] <= 1e-5
    # the per-component counts add up and agree with utils/analysis.py when present
    p = info["after"]["params"]
    assert p["total"] == sum(p[c] for c in ("embeddings", "attention", "ffn", "head"))
    assert "analysis_params_total" not in info["after"]


def test_global_iterative_sizes_sum_to_targets(setup, tmp_path):
    out = tmp_path / "global"
    _prune(setup, out, "--target_num_of_heads", "2", "--target_ffn_size", "16", "--pruning_mode", "global",
           "--n_iters", "2")
    info = json.load(open(out / "prune_info.json"))
    heads, ffn = _check_cut_equals_masked(setup, out, info)
    assert sum(heads) == 2 * L and sum(ffn) == 16 * L
    assert min(heads) >= 1 and min(ffn) >= 1
    assert len(set(ffn)) > 1                 # layers of different sizes
    rounds = info["structured"]["rounds"]
    assert [sum(r["heads_per_layer"]) for r in rounds] == [9, 6]          # 12 -> 9 -> 6
    assert [sum(r["ffn_per_layer"]) for r in rounds] == [120, 48]         # 192 -> 120 -> 48


def test_output_proj_score_runs_differs_and_global_ranks_across_layers(setup, tmp_path):
    """output_proj scores are the norms of each head's out_proj rows: with the
    norms set by hand the global choice is known exactly."""
    from utils.modeling import load_model, save_model
    model, tok, _ = load_model(setup[2])
    norms = [[4, 3, 2, 1], [10, .1, .1, .1], [1.3, 1.2, 1.1, .4]]
    for layer, ns in zip(model.bert.encoder.layers, norms):
        w = layer.self_attn.out_proj.weight.numpy()
        for h, n in enumerate(ns):
            blk = w[h * 8:(h + 1) * 8]
            w[h * 8:(h + 1) * 8] = blk * (n / np.sqrt((blk ** 2).sum()))
        layer.self_attn.out_proj.weight.set_value(w)
    crafted = str(tmp_path / "crafted")
    save_model(model, tok, crafted)
    out = tmp_path / "op_global"
    prune.main(["--model_name_or_path", crafted, "--output_dir", str(out), "--task_name", "SST-2",
                "--data_dir", setup[1], *FAST, "--target_num_of_heads", "2", "--pruning_mode", "global",
                "--head_score", "output_proj"])
    info = json.load(open(out / "prune_info.json"))
    # normalised: l0 .730 .548 .365 .183 | l1 ~1 .01 .01 .01 | l2 .613 .566 .519 .189:
    # the best of each layer, then the 3 best of the rest (l2h1, l0h1, l2h2)
    assert info["structured"]["kept_heads"] == [[0, 1], [0], [0, 1, 2]]
    assert info["after"]["heads_per_layer"] == [2, 1, 3] and info["after"]["ffn_per_layer"] == [I] * L
    np.testing.assert_allclose(info["structured"]["head_importance"], norms, rtol=1e-5)

    # on the fine-tuned teacher: output_proj ranks heads differently from grad
    grad = _prune(setup, tmp_path / "g", "--target_num_of_heads", "2", "--head_score", "grad")
    proj = _prune(setup, tmp_path / "p", "--target_num_of_heads", "2", "--head_score", "output_proj")
    g, p = np.array(grad["structured"]["head_importance"]), np.array(proj["structured"]["head_importance"])
    assert g.shape == p.shape == (L, H)
    assert any(list(np.argsort(-a)) != list(np.argsort(-b)) for a, b in zip(g, p))
    assert grad["structured"]["kept_heads"] != proj["structured"]["kept_heads"]


def test_run_glue_refinetunes_pruned_dir(setup, tmp_path):
    out = tmp_path / "pruned"
    _prune(setup, out, "--target_num_of_heads", "2", "--target_ffn_size", "16", "--pruning_mode", "global")
    heads = json.load(open(out / "prune_info.json"))["after"]["heads_per_layer"]
    run_script("run_glue.py", "--task_name", "SST-2", "--model_name_or_path", str(out), "--data_dir", setup[1],
               "--output_dir", str(tmp_path / "ft"), "--max_steps", "4", "--save_steps", "4",
               "--learning_rate", "1e-3", "--logging_steps", "2", *FAST)
    from utils.modeling import layer_shapes, load_model
    m, _, _ = load_model(str(tmp_path / "ft" / "best"))
    assert layer_shapes(m)[0] == heads


def test_pruned_dir_exports_benchmarks_and_refuses_plain_from_pretrained(setup, tmp_path):
    """prune.py's output goes through export_model.py (as it is: width 1.0)
    and benchmark.py; paddlenlp's from_pretrained, which would build the full
    shapes and skip the pruned tensors, finds no weights file and raises."""
    from paddlenlp.transformers import BertForSequenceClassification
    from utils import inference
    out = tmp_path / "pruned"
    _prune(setup, out, "--target_num_of_heads", "2", "--target_ffn_size", "16", "--pruning_mode", "global")
    after = json.load(open(out / "prune_info.json"))["after"]
    heads, ffn = after["heads_per_layer"], after["ffn_per_layer"]
    assert len(set(heads)) > 1 or len(set(ffn)) > 1          # global mode: layers differ
    assert not (out / "model.safetensors").exists() and (out / "model.pruned.safetensors").exists()
    with pytest.raises(OSError, match="model_state.pdparams"):
        BertForSequenceClassification.from_pretrained(str(out))
    static = tmp_path / "static" / "model"
    run_script("export_model.py", "--model_name_or_path", str(out), "--data_dir", setup[1],
               "--sub_model_output_dir", str(tmp_path / "dyn"), "--static_sub_model", str(static),
               "--max_seq_length", "32")
    info = json.load(open(tmp_path / "dyn" / "export_info.json"))
    assert info["heads_per_layer"] == heads and info["ffn_per_layer"] == ffn and info["check"]["passed"]
    assert info["params_after"] == info["params_before"]     # exported whole
    assert inference.read_info(str(static))["pruned"] is True
    r = run_script("export_model.py", "--model_name_or_path", str(out), "--width_mult", "1/2",
                   "--sub_model_output_dir", str(tmp_path / "dyn2"), check=False)
    assert r.returncode == 2 and "already pruned" in r.stderr and not (tmp_path / "dyn2").exists()
    r = run_script("benchmark.py", "--models", str(static), "--batch_sizes", "1", "--repeats", "3",
                   "--warmup", "1", "--max_seq_length", "16", "--output", str(tmp_path / "bench"))
    row = json.load(open(tmp_path / "bench.json"))["rows"][0]
    assert row["params"] == info["params_after"] and row["median_ms"] > 0


VOCAB_PAD_MOVES = ["[unused0]", "[PAD]", "[UNK]", "[unused1]", "[CLS]", "[SEP]", "[MASK]", "zzz", "good", "bad",
                   "movie", "plot", "yyy", "the", "was", "##s", "very", "xxx"]


def test_vocab_pruning_same_outputs_and_savings(setup, tmp_path):
    """[PAD] sits at id 1 and moves to 0; unused tokens in between go; the
    pruned model on text of kept tokens gives the original's logits."""
    import paddle
    from paddlenlp.transformers import BertConfig, BertForSequenceClassification, BertTokenizer
    from helpers import tiny_config
    from utils.modeling import load_model, save_model
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(VOCAB_PAD_MOVES) + "\n")
    paddle.seed(1)
    cfg = BertConfig(**tiny_config(vocab_size=len(VOCAB_PAD_MOVES), pad_token_id=1, num_hidden_layers=2))
    src = str(tmp_path / "src")
    save_model(BertForSequenceClassification(cfg), BertTokenizer(str(vocab)), src,
               {"task_type": "classification", "task_name": "SST-2", "label_list": ["0", "1"]})
    texts = tmp_path / "texts.txt"
    texts.write_text("1\tthe movie was good\n2\tthe plot was very bad\n3\tgoods\n")
    out = tmp_path / "vocab_pruned"
    report = prune.main(["--model_name_or_path", src, "--output_dir", str(out), "--prune_vocab",
                         "--vocab_texts", str(texts), "--vocab_text_column", "2"])
    orig, otok, _ = load_model(src)
    new, ntok, ncfg = load_model(str(out))
    orig.eval(), new.eval()
    kept = [l for l in VOCAB_PAD_MOVES if l not in ("[unused0]", "[unused1]", "zzz", "yyy", "xxx")]
    assert open(out / "vocab.txt").read().split("\n")[:-1] == kept
    assert ncfg.vocab_size == len(kept) and ncfg.pad_token_id == 0 and ntok.pad_token_id == 0
    sents = ["the movie was very good", "bad plot", "goods", "the the movie was bad bad"]
    a, b = _ids(otok, sents, otok.pad_token_id), _ids(ntok, sents, ntok.pad_token_id)
    assert a.shape == b.shape and (a != b).any()           # ids differ ...
    with paddle.no_grad():
        la = orig(paddle.to_tensor(a), token_type_ids=paddle.zeros_like(paddle.to_tensor(a))).numpy()
        lb = new(paddle.to_tensor(b), token_type_ids=paddle.zeros_like(paddle.to_tensor(b))).numpy()
    np.testing.assert_allclose(la, lb, atol=1e-5)            # ... outputs do not
    v = report["vocabulary"]
    assert v["vocab_before"] == len(VOCAB_PAD_MOVES) and v["vocab_after"] == len(kept)
    assert v["changed_token_ids"]["pad_token_id"] == [1, 0]
    assert report["after"]["params"]["embeddings"] < report["before"]["params"]["embeddings"]
    assert report["weights_bytes_saved"] > 0
    assert report["after"]["files"]["vocab_bytes"] < report["before"]["files"]["vocab_bytes"]


def test_vocab_pruning_keeps_a_headless_encoder_headless(setup, tmp_path):
    from utils.modeling import read_state_dict
    bert = write_tiny_bert(str(tmp_path / "enc"))
    texts = tmp_path / "t.txt"
    texts.write_text("good w1 w2\nbad w3\n")
    out = tmp_path / "enc_pruned"
    prune.main(["--model_name_or_path", bert, "--output_dir", str(out), "--prune_vocab", "--vocab_texts", str(texts)])
    keys = read_state_dict(str(out / "model.safetensors"))
    assert not any(k.startswith("classifier.") for k in keys)
    assert keys["bert.embeddings.word_embeddings.weight"].shape[0] == 5 + 5


def test_analyze_reports_components_and_memory(setup, tmp_path):
    out = tmp_path / "p"
    _prune(setup, out, "--target_num_of_heads", "1", "--target_ffn_size", "8")
    rows = prune.main(["--analyze", setup[2], str(out), "--names", "teacher", "pruned",
                       "--output_json", str(tmp_path / "a.json")])
    t, p = rows
    for r in rows:
        assert r["memory"]["rss_increase_mb"] > 0 and r["memory"]["peak_rss_mb"] > r["memory"]["rss_before_load_mb"]
    assert p["params"]["attention"] < t["params"]["attention"] and p["params"]["ffn"] < t["params"]["ffn"]
    assert p["params"]["embeddings"] == t["params"]["embeddings"]
    assert p["flops"]["total"] < t["flops"]["total"]
    assert json.load(open(tmp_path / "a.json"))["models"]["pruned"]["heads_per_layer"] == [1] * L


@pytest.mark.parametrize("extra,needle", [
    (["--target_num_of_heads", "5"], "--target_num_of_heads 5"),
    (["--target_num_of_heads", "0"], "at least one head"),
    (["--target_ffn_size", "65", "--pruning_mode", "global"], "--target_ffn_size 65"),
    (["--target_num_of_heads", "2", "--pruning_mode", "sideways"], "--pruning_mode"),
    (["--prune_vocab", "--vocab_texts", "/nonexistent/texts.txt"], "/nonexistent/texts.txt"),
    (["--target_num_of_heads", "2", "--n_iters", "0"], "--n_iters"),
    ([], "nothing to do"),
])
def test_bad_input_exit_2_one_error_line_nothing_written(setup, tmp_path, capsys, extra, needle):
    root, data, teacher = setup
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as e:
        run_main(prune.main, ["--model_name_or_path", teacher, "--output_dir", str(out), "--task_name", "SST-2",
                              "--data_dir", data, *extra])
    assert e.value.code == 2
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0], err
    assert not out.exists() and os.listdir(tmp_path) == []


def test_cli_subprocess_bad_mode(setup, tmp_path):
    r = run_script("prune.py", "--model_name_or_path", setup[2], "--output_dir", str(tmp_path / "x"),
                   "--task_name", "SST-2", "--data_dir", setup[1], "--target_num_of_heads", "2",
                   "--pruning_mode", "sideways", check=False)
    assert r.returncode == 2
    assert [l for l in r.stderr.splitlines() if l.startswith("error:")] == [
        "error: argument --pruning_mode: invalid choice: 'sideways' (choose from 'even', 'global')"]
    assert not (tmp_path / "x").exists()
