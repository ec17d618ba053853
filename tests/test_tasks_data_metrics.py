"""Tests of utils/tasks.py, utils/data.py and utils/metrics.py."""
import utils  # noqa: F401  (compat fixes before paddle / scipy / sklearn)

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from utils.data import (Batcher, Example, collate, encode, example_from_hub, load_glue,
                        read_glue_file)
from utils.errors import UserError
from utils.metrics import MAIN_KEY, compute_metrics, main_score
from utils.tasks import GLUE_TASKS, get_task


# ======================================================================= tasks
@pytest.mark.parametrize("alias,name", [
    ("sst-2", "SST-2"), ("sst2", "SST-2"), ("SST-2", "SST-2"), ("Sst_2", "SST-2"),
    ("sts-b", "STS-B"), ("stsb", "STS-B"), ("mnli", "MNLI"), ("CoLA", "CoLA"), ("cola", "CoLA"),
    ("mrpc", "MRPC"), ("qqp", "QQP"), ("qnli", "QNLI"), ("rte", "RTE"),
])
def test_get_task_aliases(alias, name):
    assert get_task(alias).name == name


def test_get_task_unknown():
    with pytest.raises(UserError, match=r"--task_name: unknown task 'wnli'; choose from .*SST-2"):
        get_task("wnli")


def test_task_table_facts():
    assert set(GLUE_TASKS) == {"SST-2", "QNLI", "CoLA", "MRPC", "STS-B", "QQP", "MNLI", "RTE"}
    assert get_task("stsb").is_regression and get_task("stsb").num_labels == 1
    assert get_task("mnli").num_labels == 3 and get_task("mnli").dev_splits == ("dev_matched", "dev_mismatched")
    assert get_task("cola").metric == "mcc" and get_task("mrpc").metric == "acc_and_f1"
    assert get_task("qqp").metric == "acc_and_f1" and get_task("stsb").metric == "pearson_and_spearman"


def test_label_order_matches_paddlenlp():
    """Class indices must agree with paddlenlp's hub GLUE builder."""
    from paddlenlp.datasets.glue import Glue
    for spec in GLUE_TASKS.values():
        hub = Glue.BUILDER_CONFIGS[spec.hub_name]
        assert (tuple(hub["labels"]) if hub["labels"] else None) == spec.labels, spec.name
        for split in ("train",) + spec.dev_splits + spec.test_splits:
            assert split in hub["splits"], (spec.name, split)


# ======================================================================= files
def _write(path, rows, header=None, bom=False, trailing_blank=False):
    lines = (["\t".join(header)] if header else []) + ["\t".join(r) for r in rows]
    text = "\n".join(lines) + "\n" + ("\n\n" if trailing_blank else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


MNLI_TRAIN_HEADER = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
                     "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "label1", "gold_label"]
MNLI_DEV_HEADER = MNLI_TRAIN_HEADER[:11] + ["label2", "label3", "label4", "label5", "gold_label"]


def _mnli_row(i, s1, s2, gold, dev):
    head = [str(i), "31193", f"{i}n", "government", "( ( x ) )", "( y )", "(ROOT x)", "(ROOT y)", s1, s2, gold]
    return head + ([gold, gold, "neutral", gold] if dev else []) + [gold]


def test_sst2(tmp_path):
    p = _write(tmp_path / "SST-2" / "train.tsv",
               [['"the best film" of the year ', "1"], ["it 's dull , \"very\" dull", "0"]],
               header=["sentence", "label"], bom=True, trailing_blank=True)
    ex = read_glue_file(p, get_task("sst-2"))
    assert ex == [Example('"the best film" of the year ', None, 1), Example('it \'s dull , "very" dull', None, 0)]


def test_cola_headerless(tmp_path):
    rows = [["gj04", "1", "", '"Our friends won\'t buy this analysis, let alone the next one we propose.'],
            ["gj04", "0", "*", "One more pseudo generalization and I'm giving up."]]
    p = _write(tmp_path / "CoLA" / "dev.tsv", rows)
    ex = read_glue_file(p, get_task("cola"))
    assert [e.label for e in ex] == [1, 0]
    assert ex[0].text_a.startswith('"Our friends') and ex[0].text_b is None
    # GLUE's CoLA test.tsv has a header "index<TAB>sentence"
    t = _write(tmp_path / "CoLA" / "test.tsv", [["0", "Bill whistled past the house."]], header=["index", "sentence"])
    assert read_glue_file(t, get_task("cola"), labelled=False) == [Example("Bill whistled past the house.", None, None)]


def test_mrpc(tmp_path):
    p = _write(tmp_path / "MRPC" / "train.tsv",
               [["1", "702876", "702977", 'Amrozi accused his brother , whom he called " the witness " .',
                 "Referring to him as only \" the witness \" , Amrozi accused his brother ."],
                ["0", "2108705", "2108831", "Yucaipa owned Dominick 's .", "Yucaipa bought Dominick 's ."]],
               header=["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"])
    ex = read_glue_file(p, get_task("mrpc"))
    assert [e.label for e in ex] == [1, 0]
    assert ex[1].text_a == "Yucaipa owned Dominick 's ." and ex[1].text_b == "Yucaipa bought Dominick 's ."


def test_stsb(tmp_path):
    header = ["index", "genre", "filename", "year", "old_index", "source1", "source2",
              "sentence1", "sentence2", "score"]
    p = _write(tmp_path / "STS-B" / "dev.tsv",
               [["0", "main-captions", "MSRvid", "2012test", "0000", "none", "none",
                 "A man with a hard hat is dancing.", "A man wearing a hard hat is dancing.", "5.000"],
                ["1", "main-captions", "MSRvid", "2012test", "0002", "none", "none",
                 "A young child is riding a horse.", "A child is riding a horse.", "4.750"]], header=header)
    ex = read_glue_file(p, get_task("sts-b"))
    assert [e.label for e in ex] == [5.0, 4.75] and all(isinstance(e.label, float) for e in ex)
    assert ex[1].text_b == "A child is riding a horse."


def test_qqp_qnli_rte(tmp_path):
    q = _write(tmp_path / "QQP" / "train.tsv",
               [["133273", "213221", "213222", "How is the life of a math student?", "Which is the best book?", "0"],
                ["1", "3", "4", '"Why" is it?', "Why is it?", "1"]],
               header=["id", "qid1", "qid2", "question1", "question2", "is_duplicate"])
    assert [(e.text_a, e.text_b, e.label) for e in read_glue_file(q, get_task("qqp"))][1] == \
        ('"Why" is it?', "Why is it?", 1)
    n = _write(tmp_path / "QNLI" / "dev.tsv",
               [["0", "What came into force?", "The law came into force.", "entailment"],
                ["1", "Who?", "Nobody knows.", "not_entailment"]],
               header=["index", "question", "sentence", "label"])
    assert [(e.text_a, e.label) for e in read_glue_file(n, get_task("qnli"))] == \
        [("What came into force?", 0), ("Who?", 1)]
    r = _write(tmp_path / "RTE" / "train.tsv",
               [["0", "No weapons were found.", "Weapons were found.", "not_entailment"]],
               header=["index", "sentence1", "sentence2", "label"])
    assert read_glue_file(r, get_task("rte")) == [Example("No weapons were found.", "Weapons were found.", 1)]


def test_mnli_train_and_both_dev_files(tmp_path):
    d = tmp_path / "MNLI"
    _write(d / "train.tsv", [_mnli_row(0, "a b", "c d", "neutral", False),
                             _mnli_row(1, "e", "f", "contradiction", False)], header=MNLI_TRAIN_HEADER)
    _write(d / "dev_matched.tsv", [_mnli_row(0, "m1", "m2", "entailment", True)], header=MNLI_DEV_HEADER)
    _write(d / "dev_mismatched.tsv", [_mnli_row(0, "x1", "x2", "contradiction", True),
                                      _mnli_row(1, "y1", "y2", "neutral", True)], header=MNLI_DEV_HEADER)
    task = get_task("mnli")
    data = load_glue(task, str(tmp_path), ("train",) + task.dev_splits)
    assert [e.label for e in data["train"]] == [2, 0]
    assert data["dev_matched"] == [Example("m1", "m2", 1)]
    assert [(e.text_a, e.label) for e in data["dev_mismatched"]] == [("x1", 0), ("y1", 2)]


def test_load_glue_dir_layouts(tmp_path):
    task = get_task("sst-2")
    rows, header = [["good", "1"]], ["sentence", "label"]
    _write(tmp_path / "a" / "SST-2" / "dev.tsv", rows, header)
    _write(tmp_path / "b" / "sst-2" / "dev.tsv", rows, header)
    _write(tmp_path / "c" / "dev.tsv", rows, header)
    _write(tmp_path / "d" / "sst2" / "dev.tsv", rows, header)
    for sub in "abcd":
        assert load_glue(task, str(tmp_path / sub), ["dev"]) == {"dev": [Example("good", None, 1)]}
    # test.tsv read without labels
    _write(tmp_path / "a" / "SST-2" / "test.tsv", [["0", "fine"]], ["index", "sentence"])
    assert load_glue(task, str(tmp_path / "a"), "test")["test"] == [Example("fine", None, None)]


def test_crlf_and_tab_only_splitting(tmp_path):
    p = tmp_path / "train.tsv"
    p.write_bytes(b'sentence\tlabel\r\n"unclosed quote\t1\r\nit\'s "fine" \t0\r\n')
    ex = read_glue_file(p, get_task("sst-2"))
    assert ex == [Example('"unclosed quote', None, 1), Example('it\'s "fine" ', None, 0)]


# ---------------------------------------------------------------- file errors
def test_missing_file(tmp_path):
    with pytest.raises(UserError, match=r"SST-2/dev\.tsv: file not found"):
        load_glue(get_task("sst-2"), str(tmp_path), ["dev"])
    with pytest.raises(UserError, match="--data_dir"):
        load_glue(get_task("sst-2"), str(tmp_path / "nope"), ["dev"])
    with pytest.raises(UserError, match="file not found"):
        read_glue_file(tmp_path / "x.tsv", get_task("rte"))


def test_wrong_column_count(tmp_path):
    p = _write(tmp_path / "train.tsv", [["0", "a", "b", "entailment"], ["1", "a", "entailment"]],
               header=["index", "sentence1", "sentence2", "label"])
    with pytest.raises(UserError) as e:
        read_glue_file(p, get_task("rte"))
    assert str(e.value) == f"{p}:3: expected 4 tab-separated columns, found 3"
    c = _write(tmp_path / "cola.tsv", [["gj04", "1", "", "ok"], ["gj04", "1", "ok"]])
    with pytest.raises(UserError, match=rf"{c}:2: expected 4 tab-separated columns, found 3"):
        read_glue_file(c, get_task("cola"))


def test_unknown_label(tmp_path):
    p = _write(tmp_path / "dev.tsv", [["0", "q", "s", "entailment"], ["1", "q", "s", "neutral"]],
               header=["index", "question", "sentence", "label"])
    with pytest.raises(UserError, match=rf"{p}:3: label 'neutral' is not one of 'entailment', 'not_entailment'"):
        read_glue_file(p, get_task("qnli"))


def test_bad_regression_score(tmp_path):
    header = ["index", "genre", "filename", "year", "old_index", "source1", "source2",
              "sentence1", "sentence2", "score"]
    p = _write(tmp_path / "train.tsv", [["0", "g", "f", "y", "o", "s", "s", "a", "b", "high"]], header=header)
    with pytest.raises(UserError, match=rf"{p}:2: score 'high' is not a number"):
        read_glue_file(p, get_task("stsb"))


def test_bad_header_and_blank_line(tmp_path):
    p = _write(tmp_path / "dev_matched.tsv", [["0", "a", "b", "neutral"]],
               header=["index", "sentence1", "sentence2", "label"])
    with pytest.raises(UserError, match=rf"{p}:1: header lacks column\(s\) 'gold_label' needed for MNLI"):
        read_glue_file(p, get_task("mnli"))
    q = tmp_path / "blank.tsv"
    q.write_text("sentence\tlabel\na\t1\n\nb\t0\n")
    with pytest.raises(UserError, match=rf"{q}:3: empty line"):
        read_glue_file(q, get_task("sst2"))
    t = _write(tmp_path / "test.tsv", [["0", "x"]], header=["index", "sentence"])
    with pytest.raises(UserError, match=r"header lacks column\(s\) 'label'"):
        read_glue_file(t, get_task("sst2"))  # a test file read as labelled
    e = tmp_path / "empty.tsv"
    e.write_text("")
    with pytest.raises(UserError, match="empty file"):
        read_glue_file(e, get_task("sst2"))


# ======================================================================= hub
def test_example_from_hub():
    assert example_from_hub({"sentence": "nice", "labels": 1}, get_task("sst-2")) == Example("nice", None, 1)
    assert example_from_hub({"sentence": "nice"}, get_task("cola")) == Example("nice", None, None)
    assert example_from_hub({"sentence1": "a", "sentence2": "b", "labels": 2}, get_task("mnli")) == \
        Example("a", "b", 2)
    assert example_from_hub({"sentence1": "a", "sentence2": "b", "labels": np.int64(0)}, get_task("rte")).label == 0
    # label strings (not converted) go through the task's label list
    assert example_from_hub({"sentence1": "a", "sentence2": "b", "labels": "neutral"}, get_task("mnli")).label == 2
    assert example_from_hub({"sentence1": "a", "sentence2": "b", "labels": "3.800"}, get_task("stsb")).label == 3.8
    with pytest.raises(UserError, match="out of range"):
        example_from_hub({"sentence1": "a", "sentence2": "b", "labels": 3}, get_task("mnli"))


def test_load_glue_hub_path_uses_paddlenlp(monkeypatch):
    import paddlenlp.datasets as pds
    calls = []

    def fake_load_dataset(name, config, splits):
        calls.append((name, config, splits))
        return [{"sentence1": "a", "sentence2": "b", "labels": "1.5"}]

    monkeypatch.setattr(pds, "load_dataset", fake_load_dataset)
    assert load_glue(get_task("sts-b"), None, ["dev"]) == {"dev": [Example("a", "b", 1.5)]}
    assert calls == [("glue", "sts-b", "dev")]
    with pytest.raises(UserError, match="split 'dev'"):
        load_glue(get_task("mnli"), None, ["dev"])


# ======================================================================= encode / collate
@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from paddlenlp.transformers import BertTokenizer
    d = tmp_path_factory.mktemp("vocab")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "a", "dog", '"']
    (d / "vocab.txt").write_text("\n".join(words) + "\n")
    return BertTokenizer(str(d / "vocab.txt"), do_lower_case=True)


def test_encode_single_and_pair(tokenizer):
    ex = [Example('The "cat" sat', None, 1), Example("the cat sat on the mat " * 5, None, 0)]
    f = encode(ex, tokenizer, max_seq_length=8)
    v = tokenizer.vocab
    assert f[0]["input_ids"] == [v["[CLS]"], v["the"], v['"'], v["cat"], v['"'], v["sat"], v["[SEP]"]]
    assert f[0]["token_type_ids"] == [0] * 7 and f[0]["label"] == 1
    assert len(f[1]["input_ids"]) == 8 and f[1]["input_ids"][-1] == v["[SEP]"]
    p = encode([Example("the cat", "a dog", 2.5)], tokenizer, max_seq_length=32)[0]
    assert p["input_ids"] == [v["[CLS]"], v["the"], v["cat"], v["[SEP]"], v["a"], v["dog"], v["[SEP]"]]
    assert p["token_type_ids"] == [0, 0, 0, 0, 1, 1, 1] and p["label"] == 2.5
    long_pair = encode([Example("the cat " * 20, "a dog " * 20, 0)], tokenizer, max_seq_length=16)[0]
    assert len(long_pair["input_ids"]) == 16 and 1 in long_pair["token_type_ids"]
    with pytest.raises(UserError, match="--max_seq_length"):
        encode(ex, tokenizer, max_seq_length=2)


def test_collate_shapes_padding_dtypes():
    feats = [{"input_ids": [2, 5, 3], "token_type_ids": [0, 0, 0], "label": 1},
             {"input_ids": [2, 5, 6, 3, 7, 3], "token_type_ids": [0, 0, 0, 0, 1, 1], "label": 0}]
    ids, types, labels = collate(feats, pad_token_id=0, is_regression=False)
    assert ids.shape == types.shape == (2, 6) and ids.dtype == types.dtype == np.int64
    assert ids[0].tolist() == [2, 5, 3, 0, 0, 0] and types[1].tolist() == [0, 0, 0, 0, 1, 1]
    assert labels.dtype == np.int64 and labels.tolist() == [1, 0]
    reg = [dict(f, label=float(i) + 0.5) for i, f in enumerate(feats)]
    ids, _, labels = Batcher(pad_token_id=9, is_regression=True)(reg)
    assert ids[0].tolist() == [2, 5, 3, 9, 9, 9]
    assert labels.dtype == np.float32 and labels.tolist() == [0.5, 1.5]
    assert collate([dict(f, label=None) for f in feats], 0, False)[2] is None


# ======================================================================= metrics
RNG = np.random.RandomState(1234)
LOGITS3 = RNG.randn(200, 3)
LABELS3 = RNG.randint(0, 3, 200)
LOGITS2 = RNG.randn(300, 2)
LABELS2 = RNG.randint(0, 2, 300)


def test_acc_matches_sklearn():
    r = compute_metrics("acc", LOGITS3, LABELS3)
    assert r == {"acc": pytest.approx(accuracy_score(LABELS3, LOGITS3.argmax(-1)))}
    assert main_score("acc", r) == r["acc"]


@pytest.mark.parametrize("logits,labels", [(LOGITS2, LABELS2), (LOGITS3, LABELS3)])
def test_mcc_matches_sklearn(logits, labels):
    r = compute_metrics("mcc", logits, labels)
    assert r["mcc"] == pytest.approx(matthews_corrcoef(labels, logits.argmax(-1)), abs=1e-12)


def test_mcc_correlated_and_degenerate():
    labels = LABELS2.copy()
    preds = np.where(RNG.rand(300) < 0.8, labels, 1 - labels)
    assert compute_metrics("mcc", preds, labels)["mcc"] == pytest.approx(matthews_corrcoef(labels, preds))
    const = np.zeros((300, 2)); const[:, 1] = 1.0      # always class 1
    assert compute_metrics("mcc", const, labels)["mcc"] == 0.0
    assert compute_metrics("mcc", np.ones(4, int), np.ones(4, int))["mcc"] == 0.0


def test_acc_and_f1_matches_sklearn():
    r = compute_metrics("acc_and_f1", LOGITS2, LABELS2)
    p = LOGITS2.argmax(-1)
    assert r["acc"] == pytest.approx(accuracy_score(LABELS2, p))
    assert r["f1"] == pytest.approx(f1_score(LABELS2, p))
    assert r["acc_and_f1"] == pytest.approx((r["acc"] + r["f1"]) / 2)
    assert main_score("acc_and_f1", r) == r["acc_and_f1"] and MAIN_KEY["acc_and_f1"] == "acc_and_f1"
    # degenerate: class 1 never predicted nor present -> f1 0 (sklearn zero_division=0)
    zeros = np.zeros(5, int)
    r0 = compute_metrics("acc_and_f1", zeros, zeros)
    assert r0["f1"] == f1_score(zeros, zeros, zero_division=0) == 0.0 and r0["acc"] == 1.0


def test_pearson_spearman_match_scipy():
    x = RNG.rand(150) * 5
    y = 0.6 * x + RNG.randn(150)
    r = compute_metrics("pearson_and_spearman", x[:, None], y)      # [N, 1] predictions
    assert r["pearson"] == pytest.approx(pearsonr(x, y)[0], abs=1e-10)
    assert r["spearman"] == pytest.approx(spearmanr(x, y)[0], abs=1e-10)
    assert r["corr"] == pytest.approx((r["pearson"] + r["spearman"]) / 2)
    assert main_score("pearson_and_spearman", r) == r["corr"]
    # many ties on both sides (scores in steps of 0.25 like STS-B, rounded predictions)
    xt = np.round(x * 2) / 2
    yt = np.round(np.clip(y, 0, 5) * 4) / 4
    rt = compute_metrics("pearson_and_spearman", xt, yt)
    assert rt["spearman"] == pytest.approx(spearmanr(xt, yt)[0], abs=1e-10)
    assert rt["pearson"] == pytest.approx(pearsonr(xt, yt)[0], abs=1e-10)


def test_pearson_spearman_degenerate():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    r = compute_metrics("pearson_and_spearman", np.full(4, 2.5), y)    # constant predictions
    assert r == {"pearson": 0.0, "spearman": 0.0, "corr": 0.0}
    r = compute_metrics("pearson_and_spearman", np.array([1.0, np.nan, 2.0, 3.0]), y)
    assert np.isfinite(r["corr"])
    r = compute_metrics("pearson_and_spearman", np.array([3.0]), np.array([1.0]))
    assert r["corr"] == 0.0


def test_metric_errors():
    with pytest.raises(ValueError, match="unknown metric"):
        compute_metrics("bleu", LOGITS2, LABELS2)
    with pytest.raises(ValueError, match="predictions"):
        compute_metrics("acc", LOGITS2[:10], LABELS2)
