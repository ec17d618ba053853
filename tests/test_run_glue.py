"""run_glue.py end to end on tiny learnable tasks in the GLUE layout."""
import os

import numpy as np
import pytest

from helpers import read_json, run_script, write_sst2, write_tiny_bert

COMMON = ["--max_seq_length", "32", "--batch_size", "16", "--learning_rate", "2e-3", "--logging_steps", "10",
          "--warmup_proportion", "0.1", "--device", "cpu"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_tiny_bert(str(tmp_path_factory.mktemp("tiny") / "bert"))


@pytest.fixture(scope="module")
def sst2_run(model_dir, glue_data, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("run") / "sst2")
    r = run_script("run_glue.py", "--task_name", "SST-2", "--model_name_or_path", model_dir, "--data_dir", glue_data,
                   "--output_dir", out, "--max_steps", "80", "--save_steps", "40", *COMMON)
    return out, r


def test_single_sentence_task_learns_and_writes_its_files(sst2_run):
    out, r = sst2_run
    summary = read_json(os.path.join(out, "all_results.json"))
    assert summary["best"]["dev"]["acc"] >= 0.9, summary
    for f in ("best/config.json", "best/model.safetensors", "best/vocab.txt", "best/tokenizer_config.json",
              "last/config.json", "last/model.safetensors", "results.json", "args.json",
              "checkpoints/latest"):
        assert os.path.exists(os.path.join(out, f)), f
    results = read_json(os.path.join(out, "results.json"))
    assert [rec["step"] for rec in results] == [40, 80]
    assert "Running training" in r.stdout and "loss" in r.stdout


def test_best_model_reloads_and_reproduces_its_dev_score(sst2_run, glue_data):
    from paddlenlp.transformers import BertForSequenceClassification
    from utils.data import collate, encode, load_glue
    from utils.evaluation import evaluate_task
    from utils.modeling import load_model
    from utils.tasks import get_task
    out, _ = sst2_run
    task = get_task("SST-2")
    model, tok, _ = load_model(os.path.join(out, "best"))
    model.eval()
    feats = encode(load_glue(task, glue_data, ("dev",))["dev"], tok, 32)
    results, score = evaluate_task(lambda i, s: model(i, token_type_ids=s), {"dev": feats},
                                   lambda b: collate(b, tok.pad_token_id, False), task, 16)
    assert score == pytest.approx(read_json(os.path.join(out, "all_results.json"))["best_score"], abs=1e-9)
    # PaddleNLP's own loader takes the directory as well, every weight used
    plain = BertForSequenceClassification.from_pretrained(os.path.join(out, "best"))
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), plain.state_dict()[k].numpy())


def test_pair_task_learns(model_dir, glue_data, tmp_path):
    out = str(tmp_path / "rte")
    run_script("run_glue.py", "--task_name", "RTE", "--model_name_or_path", model_dir, "--data_dir", glue_data,
               "--output_dir", out, "--max_steps", "150", "--save_steps", "50", *COMMON)
    assert read_json(os.path.join(out, "all_results.json"))["best"]["dev"]["acc"] >= 0.9


def test_regression_task_learns(model_dir, glue_data, tmp_path):
    out = str(tmp_path / "stsb")
    run_script("run_glue.py", "--task_name", "STS-B", "--model_name_or_path", model_dir, "--data_dir", glue_data,
               "--output_dir", out, "--max_steps", "200", "--save_steps", "50", *COMMON)
    best = read_json(os.path.join(out, "all_results.json"))["best"]["dev"]
    assert best["pearson"] > 0.8, best
    cfg = read_json(os.path.join(out, "best", "config.json"))
    assert len(cfg["id2label"]) == 1 and cfg["compression_suite"]["task_type"] == "regression"


def test_interrupted_run_resumes_to_the_same_result(glue_data, tmp_path):
    # dropout on, so that the random state after resuming matters
    model_dir = write_tiny_bert(str(tmp_path / "bert"), hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    args = ["--task_name", "SST-2", "--model_name_or_path", model_dir, "--data_dir", glue_data,
            "--max_steps", "30", "--save_steps", "10", *COMMON]
    full, cut = str(tmp_path / "full"), str(tmp_path / "cut")
    run_script("run_glue.py", *args, "--output_dir", full)
    r = run_script("run_glue.py", *args, "--output_dir", cut, "--debug_exit_after_step", "20", check=False)
    assert r.returncode == 3, r.stderr[-2000:]
    assert not os.path.exists(os.path.join(cut, "last"))
    # without --resume the script refuses to clobber the checkpoint
    r = run_script("run_glue.py", *args, "--output_dir", cut, check=False)
    assert r.returncode == 2 and "--resume" in r.stderr
    # a resume with another seed would be another run: refused, nothing touched
    before = sorted(os.listdir(cut)), read_json(os.path.join(cut, "results.json"))
    r = run_script("run_glue.py", *args, "--output_dir", cut, "--resume", "--seed", "7", check=False)
    assert r.returncode == 2 and "--seed 42 there, 7 now" in r.stderr, r.stderr[-2000:]
    assert (sorted(os.listdir(cut)), read_json(os.path.join(cut, "results.json"))) == before
    run_script("run_glue.py", *args, "--output_dir", cut, "--resume")
    a, b = read_json(os.path.join(full, "all_results.json")), read_json(os.path.join(cut, "all_results.json"))
    assert a["best_score"] == b["best_score"] and a["best_step"] == b["best_step"]
    from utils.modeling import read_state_dict
    wa = read_state_dict(os.path.join(full, "last", "model.safetensors"))
    wb = read_state_dict(os.path.join(cut, "last", "model.safetensors"))
    for k in wa:
        np.testing.assert_allclose(wa[k], wb[k], atol=1e-6, err_msg=k)
    steps = [rec["step"] for rec in read_json(os.path.join(cut, "results.json"))]
    assert steps == [10, 20, 30]


def test_config_only_directory_starts_from_random_init(glue_data, tmp_path):
    d = write_tiny_bert(str(tmp_path / "scratch"), with_weights=False)
    r = run_script("run_glue.py", "--task_name", "SST-2", "--model_name_or_path", d, "--data_dir", glue_data,
                   "--output_dir", str(tmp_path / "o"), "--max_steps", "2", "--save_steps", "2", *COMMON)
    assert "RANDOM initialisation" in r.stdout + r.stderr


def _bad(tmp_path, model_dir, glue_data, *extra, task="SST-2"):
    out = tmp_path / "never"
    r = run_script("run_glue.py", "--task_name", task, "--model_name_or_path", model_dir, "--data_dir", glue_data,
                   "--output_dir", str(out), "--max_steps", "2", *COMMON, *extra, check=False)
    assert r.returncode == 2, r.stderr[-3000:]
    lines = [l for l in r.stderr.strip().splitlines() if l.startswith("error:")]
    assert len(lines) == 1, r.stderr[-3000:]
    assert not out.exists()
    return lines[0]


def test_bad_inputs_exit_2_with_one_line_and_write_nothing(tmp_path, model_dir):
    d = tmp_path / "data"
    write_sst2(str(d / "SST-2"), n_train=10, n_dev=4)
    # missing file
    msg = _bad(tmp_path, model_dir, str(tmp_path / "nowhere"))
    assert "nowhere" in msg
    # wrong column count, unknown label
    bad = tmp_path / "bad"
    write_sst2(str(bad / "SST-2"), n_train=10, n_dev=4)
    lines = open(bad / "SST-2" / "train.tsv").read().splitlines()
    lines[3] = lines[3] + "\textra"
    open(bad / "SST-2" / "train.tsv", "w").write("\n".join(lines) + "\n")
    msg = _bad(tmp_path, model_dir, str(bad))
    assert "train.tsv:4" in msg
    lines[3] = "some words\t7"
    open(bad / "SST-2" / "train.tsv", "w").write("\n".join(lines) + "\n")
    msg = _bad(tmp_path, model_dir, str(bad))
    assert "train.tsv:4" in msg and "7" in msg
    # unknown task
    assert "--task_name" in _bad(tmp_path, model_dir, str(d), task="SST-9")
    # model directory without a config
    empty = tmp_path / "empty_model"
    empty.mkdir()
    assert "config" in _bad(tmp_path, str(empty), str(d))
    # model of another task (3 labels) for a 2-label task
    from paddlenlp.transformers import BertConfig, BertForSequenceClassification
    from helpers import tiny_config, write_vocab
    other = tmp_path / "other"
    m = BertForSequenceClassification(BertConfig(**tiny_config(num_labels=3)))
    m.config.compression_suite = {"task_type": "classification"}
    m.save_pretrained(str(other))
    write_vocab(str(other / "vocab.txt"))
    assert "3 output" in _bad(tmp_path, str(other), str(d))


def test_mnli_reports_matched_and_mismatched(model_dir, tmp_path):
    from helpers import write_mnli
    write_mnli(str(tmp_path / "data" / "MNLI"))
    out = str(tmp_path / "mnli")
    run_script("run_glue.py", "--task_name", "MNLI", "--model_name_or_path", model_dir, "--data_dir",
               str(tmp_path / "data"), "--output_dir", out, "--max_steps", "4", "--save_steps", "4", *COMMON)
    rec = read_json(os.path.join(out, "results.json"))[-1]
    assert set(rec) >= {"dev_matched", "dev_mismatched"}
    assert 0.0 <= rec["dev_matched"]["acc"] <= 1.0 and "acc" in rec["dev_mismatched"]
    assert rec["score"] == rec["dev_matched"]["acc"]
    assert len(read_json(os.path.join(out, "best", "config.json"))["id2label"]) == 3


# --------------------------------------------------------------- a SentencePiece (XLM-R) model directory
def spm_model_dir(root):
    """The tiny converted E5S1 model of tests/test_e5.py: sentencepiece.bpe.model,
    <s> 0, <pad> 1, </s> 2, no task head."""
    import convert_checkpoint
    from test_e5 import write_e5s1
    out = str(root / "spm")
    convert_checkpoint.convert(write_e5s1(str(root / "tiny.bin")), out, log=None, quiet=True)
    return out


def test_glue_encoding_takes_special_tokens_and_padding_from_the_spm_tokenizer(tmp_path):
    from utils.data import Batcher, Example, encode
    from utils.modeling import load_tokenizer
    tok = load_tokenizer(spm_model_dir(tmp_path))
    feats = encode([Example("ab c", None, 1), Example("ab", "c", 0)], tok, 16)
    assert feats[0]["input_ids"] == [0, 6, 8, 7, 2] and feats[1]["input_ids"] == [0, 6, 2, 2, 8, 7, 2]
    ids, seg, labels = Batcher(tok.pad_token_id, False)(feats)
    assert ids[0].tolist() == [0, 6, 8, 7, 2, 1, 1] and not seg.any() and labels.tolist() == [1, 0]


def test_run_glue_from_a_sentencepiece_model_dir(tmp_path):
    """run_glue.py on own data from a model directory holding the SPM
    tokenizer: it trains, and best/ keeps that tokenizer."""
    from helpers import write_own_csv
    model = spm_model_dir(tmp_path)
    write_own_csv(str(tmp_path / "train.csv"), n=40)
    write_own_csv(str(tmp_path / "dev.csv"), n=20, seed=9)
    out = str(tmp_path / "run")
    run_script("run_glue.py", "--model_name_or_path", model, "--train_file", tmp_path / "train.csv",
               "--dev_file", tmp_path / "dev.csv", "--text_column", "review", "--label_column", "sentiment",
               "--output_dir", out, "--max_steps", "4", "--save_steps", "4", "--max_seq_length", "16",
               "--batch_size", "8", "--logging_steps", "2", "--device", "cpu")
    assert os.path.isfile(os.path.join(out, "best", "sentencepiece.bpe.model"))
    assert read_json(os.path.join(out, "all_results.json"))["steps"] == 4
