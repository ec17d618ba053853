"""Own data (TSV/CSV files with named columns) through every stage:
run_glue.py, run_glue_ofa.py, export_model.py and predict.py, for
classification, regression and multilabel; the own-data metrics against
scikit-learn; bad own input.

The scripts run in this process (``helpers.run_in_process``: their ``main``
under ``run_main``, exactly as their command line) to stay within the time
budget; test_run_glue.py and test_export.py run the same entry points as
separate processes.
"""
import csv
import os

import numpy as np
import pytest

from helpers import (read_json, run_in_process, write_own_csv, write_own_multilabel_tsv,
                     write_own_regression_tsv, write_tiny_bert)

COMMON = ["--max_seq_length", "32", "--batch_size", "16", "--learning_rate", "2e-3", "--logging_steps", "50",
          "--warmup_proportion", "0.1", "--device", "cpu"]
ML_LABELS = ["neg", "pos", "x"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("own")


@pytest.fixture(scope="module")
def bert(root):
    return write_tiny_bert(str(root / "bert"))


@pytest.fixture(scope="module")
def csv_data(root):
    d = root / "csv"
    write_own_csv(str(d / "train.csv"), n=240, seed=4)
    write_own_csv(str(d / "dev.csv"), n=60, seed=40)
    with open(d / "test.csv", "w", newline="") as f:   # unlabelled: no sentiment column
        w = csv.writer(f)
        w.writerow(["id", "review"])
        w.writerows([[0, 'w1, "good" w2 nice'], [1, "w3 bad, w4 awful"]])
    return d


@pytest.fixture(scope="module")
def ml_data(root):
    d = root / "ml"
    write_own_multilabel_tsv(str(d / "train.tsv"), n=240, seed=5)
    write_own_multilabel_tsv(str(d / "dev.tsv"), n=60, seed=50)
    write_own_multilabel_tsv(str(d / "test.tsv"), n=30, seed=500)
    return d


@pytest.fixture(scope="module")
def csv_run(root, bert, csv_data):
    out = root / "csv_run"
    run_in_process("run_glue.py", "--model_name_or_path", bert, "--train_file", csv_data / "train.csv",
                   "--dev_file", csv_data / "dev.csv", "--test_file", csv_data / "test.csv",
                   "--text_column", "review", "--label_column", "sentiment", "--output_dir", out,
                   "--max_steps", 80, "--save_steps", 40, *COMMON)
    return out


@pytest.fixture(scope="module")
def ml_teacher(root, bert, ml_data):
    out = root / "ml_run"
    run_in_process("run_glue.py", "--model_name_or_path", bert, "--train_file", ml_data / "train.tsv",
                   "--dev_file", ml_data / "dev.tsv", "--test_file", ml_data / "test.tsv", "--label_column", "tags",
                   "--task_type", "multilabel", "--output_dir", out, "--max_steps", 150, "--save_steps", 50, *COMMON)
    return out


@pytest.fixture(scope="module")
def ml_ofa(root, ml_teacher, ml_data):
    out = root / "ml_ofa"
    run_in_process("run_glue_ofa.py", "--model_name_or_path", ml_teacher / "best", "--train_file",
                   ml_data / "train.tsv", "--dev_file", ml_data / "dev.tsv", "--test_file", ml_data / "test.tsv",
                   "--label_column", "tags", "--task_type", "multilabel", "--output_dir", out,
                   "--width_mult_list", "1.0", "0.5", "--max_steps", 40, "--save_steps", 20,
                   "--max_seq_length", "32", "--batch_size", "16", "--learning_rate", "1e-3", "--logging_steps", "20",
                   "--device", "cpu")
    return out


# ======================================================================= the stages
def test_csv_classification_with_quoted_commas_learns(csv_run, csv_data):
    summary = read_json(csv_run / "all_results.json")
    assert summary["best"]["dev"]["acc"] >= 0.9, summary
    assert set(summary["best"]["dev"]) == {"acc", "macro_f1"}
    assert summary["label_list"] == ["negative", "positive"]          # inferred from train, sorted
    suite = read_json(csv_run / "best" / "config.json")["compression_suite"]
    assert suite["task_type"] == "classification" and suite["label_list"] == ["negative", "positive"]
    assert suite["own_data"] == {"text_column": "review", "text_pair_column": None, "label_column": "sentiment",
                                 "label_delimiter": ","}
    # unlabelled test file: predictions of the best model, no scores
    assert summary["test"] is None
    rows = [l.split("\t") for l in (csv_run / "test_predictions.tsv").read_text().splitlines()]
    assert [r[0] for r in rows] == ["positive", "negative"] and rows[0][2] == 'w1, "good" w2 nice'


def test_csv_reader_follows_rfc_quoting(tmp_path):
    from utils.data import Example, read_glue_file
    from utils.tasks import own_task
    p = tmp_path / "d.csv"
    p.write_bytes(b'\xef\xbb\xbfid,text,label\r\n1,"a, ""quoted"" b",x\r\n2,"two\nlines, one field",y\r\n'
                  b'3,plain "mid" quote,x\r\n')
    task = own_task("classification", "text", None, "label", ["x", "y"])
    assert read_glue_file(p, task) == [Example('a, "quoted" b', None, 0), Example("two\nlines, one field", None, 1),
                                       Example('plain "mid" quote', None, 0)]
    from utils.errors import UserError
    p.write_text('id,text,label\n1,"two\nlines",x\n2,a,b,x\n')        # line numbers count physical lines
    with pytest.raises(UserError, match=rf"{p}:4: expected 3 comma-separated columns, found 4"):
        read_glue_file(p, task)
    p.write_text('id,text,label\n1,"unclosed,x\n2,a,x\n')
    with pytest.raises(UserError, match=rf"{p}:2: malformed CSV"):
        read_glue_file(p, task)
    # a TSV file keeps quotes as data
    t = tmp_path / "d.tsv"
    t.write_text('text\tlabel\n"a, b\ty\n')
    assert read_glue_file(t, task) == [Example('"a, b', None, 1)]


def test_tsv_multilabel_learns_and_records_three_metrics(ml_teacher):
    summary = read_json(ml_teacher / "all_results.json")
    dev = summary["best"]["dev"]
    assert set(dev) == {"micro_f1", "macro_f1", "one_minus_mlogloss"}
    assert dev["micro_f1"] >= 0.85, summary
    assert summary["best_score"] == dev["micro_f1"] and summary["label_list"] == ML_LABELS
    assert set(summary["test"]) == {"micro_f1", "macro_f1", "one_minus_mlogloss"}   # labelled test file: scored
    assert all(set(rec["dev"]) == set(dev) for rec in read_json(ml_teacher / "results.json"))
    cfg = read_json(ml_teacher / "best" / "config.json")
    assert cfg["compression_suite"]["task_type"] == "multilabel" and len(cfg["id2label"]) == 3
    assert cfg["compression_suite"]["own_data"]["label_column"] == "tags"
    rows = [l.split("\t") for l in (ml_teacher / "test_predictions.tsv").read_text().splitlines()]
    assert len(rows) == 30 and all(set(filter(None, r[0].split(","))) <= set(ML_LABELS) for r in rows)


def test_empty_multilabel_cell_is_an_example_without_labels(ml_data):
    from utils.data import Batcher, read_glue_file
    from utils.tasks import own_task
    task = own_task("multilabel", "text", None, "tags", ML_LABELS)
    lines = (ml_data / "train.tsv").read_text().splitlines()
    examples = read_glue_file(ml_data / "train.tsv", task)
    empty = [i for i, l in enumerate(lines[1:]) if l.endswith("\t")]
    assert empty and all(examples[i].label == (0.0, 0.0, 0.0) for i in empty)
    both = next(i for i, l in enumerate(lines[1:]) if l.endswith("\tpos,x"))
    assert examples[both].label == (0.0, 1.0, 1.0)
    feats = [{"input_ids": [2, 3], "token_type_ids": [0, 0], "label": examples[i].label} for i in (empty[0], both)]
    _, _, labels = Batcher.for_task(task, 0)(feats)
    assert labels.dtype == np.float32 and labels.tolist() == [[0, 0, 0], [0, 1, 1]]


def test_regression_own_data_records_pearson(root, bert):
    d = root / "reg"
    write_own_regression_tsv(str(d / "train.tsv"), n=240, seed=6)
    write_own_regression_tsv(str(d / "dev.tsv"), n=60, seed=60)
    out = d / "run"
    run_in_process("run_glue.py", "--model_name_or_path", bert, "--train_file", d / "train.tsv", "--dev_file",
                   d / "dev.tsv", "--text_column", "premise", "--text_pair_column", "hypothesis", "--label_column",
                   "similarity", "--task_type", "regression", "--output_dir", out, "--max_steps", 100,
                   "--save_steps", 50, *COMMON)
    best = read_json(out / "all_results.json")["best"]["dev"]
    assert set(best) == {"pearson", "spearman", "corr"} and best["pearson"] > 0.5, best
    suite = read_json(out / "best" / "config.json")["compression_suite"]
    assert suite["task_type"] == "regression" and suite["label_list"] == []
    assert suite["own_data"]["text_pair_column"] == "hypothesis"


def test_ofa_on_the_multilabel_teacher_writes_every_width(ml_ofa):
    table = read_json(ml_ofa / "all_results.json")
    rows = {r["dir"]: r for r in table["rows"]}
    assert set(rows) == {"width_1.0000", "width_0.5000"}
    for d, row in rows.items():
        assert (ml_ofa / d / "model.safetensors").exists()
        suite = read_json(ml_ofa / d / "config.json")["compression_suite"]
        assert suite["task_type"] == "multilabel" and suite["label_list"] == ML_LABELS
        assert suite["own_data"]["label_column"] == "tags" and suite["supernet"]["widths"] == [1.0, 0.5]
        assert set(row["results"]["dev"]) == {"micro_f1", "macro_f1", "one_minus_mlogloss"}
        assert set(row["test"]) == {"micro_f1", "macro_f1", "one_minus_mlogloss"}
    assert rows["width_1.0000"]["score"] >= 0.85, table
    assert rows["width_0.5000"]["params"] < rows["width_1.0000"]["params"]


def test_export_and_predict_multilabel(ml_ofa, ml_data, tmp_path):
    check = tmp_path / "check.txt"
    check.write_text("w1 good w2 w50\nw3 bad w4\nw5 w6 w7\n")
    dyn, prefix = tmp_path / "dyn", tmp_path / "static" / "model"
    run_in_process("export_model.py", "--model_name_or_path", ml_ofa / "width_0.5000", "--width_mult", "0.5",
                   "--sub_model_output_dir", dyn, "--static_sub_model", prefix, "--check_text", check,
                   "--max_seq_length", "32")
    info = read_json(dyn / "export_info.json")
    assert info["check"]["passed"] and info["task_type"] == "multilabel" and info["heads_per_layer"] == [2, 2]
    assert read_json(dyn / "config.json")["compression_suite"]["own_data"]["label_column"] == "tags"

    texts = [l.split("\t")[0] for l in (ml_data / "dev.tsv").read_text().splitlines()[1:]]
    inp = tmp_path / "in.txt"
    inp.write_text("\n".join(texts) + "\n")
    out = tmp_path / "pred.tsv"
    run_in_process("predict.py", "--model_prefix", prefix, "--input_file", inp, "--output_file", out,
                   "--batch_size", "16")
    rows = [l.split("\t") for l in out.read_text().splitlines()]
    assert len(rows) == len(texts) and [r[2] for r in rows] == texts
    for labels, probs, _ in rows:
        named = dict(p.rsplit("=", 1) for p in probs.split(","))
        assert list(named) == ML_LABELS and all(0.0 <= float(v) <= 1.0 for v in named.values())
        assert (labels.split(",") if labels else []) == [k for k in ML_LABELS if float(named[k]) > 0.5]
    # the exported half-width model still predicts the rule on most dev examples
    from utils.data import read_glue_file
    from utils.tasks import own_task
    gold = read_glue_file(ml_data / "dev.tsv", own_task("multilabel", "text", None, "tags", ML_LABELS))
    hits = [set(filter(None, r[0].split(","))) == {ML_LABELS[k] for k, v in enumerate(e.label) if v}
            for r, e in zip(rows, gold)]
    assert np.mean(hits) >= 0.6, np.mean(hits)


def test_export_check_reads_the_own_dev_file(ml_teacher, ml_data, tmp_path, caplog):
    """export_model.py --dev_file: the check runs on that file's texts (read
    with the columns the model records), not on made-up sentences."""
    import logging
    from utils.check_inputs import load_check_texts
    from utils.modeling import load_config, suite_info
    dyn = tmp_path / "dyn"
    with caplog.at_level(logging.WARNING, logger="bert_suite"):
        run_in_process("export_model.py", "--model_name_or_path", ml_teacher / "best", "--dev_file",
                       ml_data / "dev.tsv", "--sub_model_output_dir", dyn, "--check_examples", "7",
                       "--max_seq_length", "32")
    assert not [r for r in caplog.records if "vocabulary words" in r.getMessage()]
    info = read_json(dyn / "export_info.json")
    assert info["check"]["passed"] and info["check"]["examples"] == 7
    # the same texts the CLI used: the first rows of dev.tsv, text column only
    texts = load_check_texts(suite_info(load_config(str(ml_teacher / "best"))), 7, dev_file=str(ml_data / "dev.tsv"))
    first = (ml_data / "dev.tsv").read_text().splitlines()[1].split("\t")[0]
    assert len(texts) == 7 and texts[0] == (first, None)


# ======================================================================= metrics and loss
def test_multilabel_metrics_match_sklearn():
    from sklearn.metrics import f1_score, log_loss
    from utils.metrics import compute_metrics, main_score
    rng = np.random.RandomState(7)
    labels = (rng.rand(200, 4) < 0.4).astype(np.float32)
    labels[:, 3] = 0                                            # a label never present
    logits = rng.randn(200, 4) * 2 + (labels - 0.5) * 2
    r = compute_metrics("multilabel", logits, labels)
    hits = (logits > 0).astype(int)
    assert r["micro_f1"] == pytest.approx(f1_score(labels, hits, average="micro", zero_division=0), abs=1e-12)
    assert r["macro_f1"] == pytest.approx(f1_score(labels, hits, average="macro", zero_division=0), abs=1e-12)
    probs = 1 / (1 + np.exp(-logits))
    mlogloss = np.mean([log_loss(labels[:, j], probs[:, j], labels=[0, 1]) for j in range(4)])
    assert r["one_minus_mlogloss"] == pytest.approx(1 - mlogloss, abs=1e-9)
    assert main_score("multilabel", r) == r["micro_f1"]
    # clipped: a confident wrong prediction gives a large but finite loss
    extreme = compute_metrics("multilabel", np.array([[-1e4, 1e4]]), np.array([[1.0, 0.0]]))
    assert np.isfinite(extreme["one_minus_mlogloss"]) and extreme["one_minus_mlogloss"] < -30
    with pytest.raises(ValueError, match="same"):
        compute_metrics("multilabel", logits[:, :3], labels)


def test_acc_and_macro_f1_matches_sklearn():
    from sklearn.metrics import accuracy_score, f1_score
    from utils.metrics import compute_metrics, main_score
    rng = np.random.RandomState(8)
    labels, logits = rng.randint(0, 3, 150), rng.randn(150, 3)
    r = compute_metrics("acc_and_macro_f1", logits, labels)
    assert r["acc"] == pytest.approx(accuracy_score(labels, logits.argmax(-1)))
    assert r["macro_f1"] == pytest.approx(f1_score(labels, logits.argmax(-1), average="macro"))
    assert main_score("acc_and_macro_f1", r) == r["acc"]


def test_multilabel_distill_loss_is_bce_against_teacher_probabilities():
    import paddle
    from utils.losses import distill_loss
    rng = np.random.RandomState(9)
    s, t = rng.randn(6, 3).astype("float32"), rng.randn(6, 3).astype("float32")
    h = [paddle.zeros([6, 4, 8])]
    total, rep, logit = distill_loss(paddle.to_tensor(s), h, paddle.to_tensor(t), h, "multilabel", 1.0, 0.1)
    p = 1 / (1 + np.exp(-t))
    q = 1 / (1 + np.exp(-s))
    want = -np.mean(p * np.log(q) + (1 - p) * np.log(1 - q))
    assert float(logit) == pytest.approx(want, rel=1e-5) and float(total) == pytest.approx(want, rel=1e-5)


# ======================================================================= bad input
def _fails(capsys, script, out, *args):
    with pytest.raises(SystemExit) as e:
        run_in_process(script, *args, "--output_dir", out, "--max_steps", 2, "--device", "cpu")
    err = capsys.readouterr().err
    assert e.value.code == 2, err[-2000:]
    lines = [l for l in err.splitlines() if l.startswith("error:")]
    assert len(lines) == 1, err[-2000:]
    assert not os.path.exists(out)
    return lines[0]


def test_bad_own_data_exits_2_naming_file_and_line(tmp_path, bert, capsys):
    out = str(tmp_path / "never")
    d = tmp_path / "data"
    train, dev = write_own_csv(str(d / "train.csv"), n=12), write_own_csv(str(d / "dev.csv"), n=6, seed=1)
    cols = ["--text_column", "review", "--label_column", "sentiment"]

    def run(*args, script="run_glue.py", model=bert):
        return _fails(capsys, script, out, "--model_name_or_path", model, *args)

    # missing file
    msg = run("--train_file", d / "nope.csv", "--dev_file", dev, *cols)
    assert "nope.csv: file not found" in msg
    # a column missing from the header: named, with the file
    msg = run("--train_file", train, "--dev_file", dev, "--text_column", "body", "--label_column", "sentiment")
    assert f"{train}:1" in msg and "'body'" in msg
    # a row with the wrong number of fields
    lines = open(train).read().splitlines()
    bad = d / "bad.csv"
    bad.write_text("\n".join(lines[:4] + [lines[4] + ",extra"] + lines[5:]) + "\n")
    msg = run("--train_file", bad, "--dev_file", dev, *cols)
    assert f"{bad}:5:" in msg and "expected 3 comma-separated columns, found 4" in msg
    # a label not in --label_list
    msg = run("--train_file", train, "--dev_file", dev, *cols, "--label_list", "negative", "neutral")
    assert f"{train}:" in msg and "'positive' is not one of 'negative', 'neutral'" in msg
    # multilabel: one label of a cell unknown (an empty cell would be fine)
    tsv = d / "ml.tsv"
    tsv.write_text("text\ttags\nw1 good\tpos\nw2\t\nw3 bad\tneg,zzz\n")
    msg = run("--train_file", tsv, "--dev_file", tsv, "--label_column", "tags", "--task_type", "multilabel",
              "--label_list", "neg,pos")
    assert f"{tsv}:4:" in msg and "'zzz'" in msg
    # regression: a score that is not a number
    reg = d / "reg.tsv"
    reg.write_text("text\tscore\nw1 good\t1.5\nw2 bad\thigh\n")
    msg = run("--train_file", reg, "--dev_file", reg, "--label_column", "score", "--task_type", "regression")
    assert f"{reg}:3:" in msg and "'high' is not a number" in msg
    # the OFA script reads own data the same way (before its teacher is loaded)
    msg = run("--train_file", bad, "--dev_file", dev, *cols, script="run_glue_ofa.py")
    assert f"{bad}:5:" in msg


def test_task_flags_are_checked_before_anything_runs(tmp_path, bert, capsys):
    out = str(tmp_path / "never")
    train = write_own_csv(str(tmp_path / "train.csv"), n=12)
    m = ["--model_name_or_path", bert]
    msg = _fails(capsys, "run_glue.py", out, *m, "--task_name", "SST-2", "--train_file", train, "--dev_file", train)
    assert "mutually exclusive" in msg and "--train_file" in msg
    assert "--task_name" in _fails(capsys, "run_glue.py", out, *m)
    assert "--dev_file" in _fails(capsys, "run_glue.py", out, *m, "--train_file", train)
    msg = _fails(capsys, "run_glue.py", out, *m, "--train_file", tmp_path / "t.txt", "--dev_file", train)
    assert "t.txt" in msg and ".tsv or .csv" in msg
    msg = _fails(capsys, "run_glue.py", out, *m, "--train_file", train, "--dev_file", train,
                 "--label_delimiter", "|")
    assert "--label_delimiter" in msg and "multilabel" in msg
    msg = _fails(capsys, "run_glue_ofa.py", out, *m, "--train_file", train, "--dev_file", train,
                 "--text_column", "review", "--label_column", "review")
    assert "different columns" in msg
    one = tmp_path / "one.csv"
    one.write_text("text,label\nw1,a\nw2,a\n")
    msg = _fails(capsys, "run_glue.py", out, *m, "--train_file", one, "--dev_file", one)
    assert str(one) in msg and "--label_list" in msg


def test_ofa_refuses_a_label_order_other_than_the_teachers(tmp_path, ml_teacher, ml_data, capsys):
    msg = _fails(capsys, "run_glue_ofa.py", str(tmp_path / "never"), "--model_name_or_path", ml_teacher / "best",
                 "--train_file", ml_data / "train.tsv", "--dev_file", ml_data / "dev.tsv", "--label_column", "tags",
                 "--task_type", "multilabel", "--label_list", "pos", "neg", "x")
    assert "neg, pos, x" in msg and "--label_list" in msg
