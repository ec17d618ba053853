"""Issue 17: no code runs from a model file, no output flag destroys a
directory it did not write, one run owns its output directory, records of
overwritten / resumed runs are exact, and bad paths and lengths are one
``error:`` line before any model loads."""
import json
import os
import pickle
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from helpers import REPO, read_json, run_in_process, run_script, write_sst2, write_tiny_bert

COMMON = ["--task_name", "SST-2", "--max_seq_length", "32", "--batch_size", "16", "--learning_rate", "2e-3",
          "--logging_steps", "10", "--device", "cpu"]


@pytest.fixture(autouse=True)
def fresh_log_handlers():
    """In-process runs log to the sys.stdout of their test (capsys swaps it)."""
    import logging
    logging.getLogger("bert_suite").handlers.clear()
    yield
    logging.getLogger("bert_suite").handlers.clear()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("safety")
    bert = write_tiny_bert(str(root / "bert"))
    write_sst2(str(root / "glue" / "SST-2"), n_train=96, n_dev=32)
    return bert, str(root / "glue")


def one_error_line(capsys_or_proc, *fragments):
    err = capsys_or_proc.stderr if hasattr(capsys_or_proc, "stderr") else capsys_or_proc.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err[-3000:]
    for frag in fragments:
        assert frag in lines[0], lines[0]
    return lines[0]


def exits_2(script, *args):
    with pytest.raises(SystemExit) as e:
        run_in_process(script, *args)
    assert e.value.code == 2


def tree(path):
    """{relative path: bytes} of every file below ``path``."""
    out = {}
    for root, _, files in os.walk(path):
        for f in files:
            full = os.path.join(root, f)
            with open(full, "rb") as fh:
                out[os.path.relpath(full, path)] = fh.read()
    return out


# --------------------------------------------------------------------------- 1. no code runs from a model file
class _Boom:
    """Pickles as a call of os.system (what a malicious model file does)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_malicious_pdparams_never_runs_and_the_error_names_the_global(tmp_path, tiny):
    from utils.errors import UserError
    from utils.modeling import load_model
    bert, _ = tiny
    d = tmp_path / "evil"
    d.mkdir()
    for f in ("config.json", "vocab.txt"):
        (d / f).write_bytes(open(os.path.join(bert, f), "rb").read())
    marker = tmp_path / "MARKER"
    with open(d / "model_state.pdparams", "wb") as f:
        pickle.dump({"bert.embeddings.word_embeddings.weight": _Boom(marker)}, f, protocol=4)
    with pytest.raises(UserError) as e:
        load_model(str(d), "classification", 2)
    assert not marker.exists()
    assert "model_state.pdparams" in str(e.value) and f"{os.system.__module__}.system" in str(e.value)
    assert "refused" in str(e.value)


def test_a_malicious_optimizer_state_is_refused_on_resume(tmp_path):
    from utils import checkpoint, training
    from utils.errors import UserError
    from test_training_utils import OPT, _model
    model = _model()
    opt, sched = training.build_optimizer(model, 10, **OPT)
    checkpoint.save_checkpoint(str(tmp_path), 5, model, opt, sched, {"epoch": 0})
    marker = tmp_path / "MARKER"
    with open(tmp_path / "checkpoints" / "step-5" / "optimizer.pdopt", "wb") as f:
        pickle.dump({"LR_Scheduler": _Boom(marker)}, f, protocol=2)
    with pytest.raises(UserError, match="optimizer.pdopt: refused to load.*system"):
        checkpoint.load_checkpoint(str(tmp_path), model, opt, sched)
    assert not marker.exists()


def test_paddle_save_files_load_as_paddle_load_reads_them(tmp_path):
    """The restricted unpickler rebuilds exactly what paddle.save writes for a
    state dict (protocols 2 and 4) and an optimizer state."""
    import paddle
    from utils.safe_pickle import load_state_dict
    from test_training_utils import OPT, _model
    from utils import training
    model = _model()
    opt, _ = training.build_optimizer(model, 10, **OPT)
    model(paddle.to_tensor([[2, 5, 6, 3]])).sum().backward()
    opt.step()
    for proto in (2, 4):
        paddle.save(model.state_dict(), str(tmp_path / f"m{proto}.pdparams"), protocol=proto)
        mine, ref = load_state_dict(str(tmp_path / f"m{proto}.pdparams")), \
            paddle.load(str(tmp_path / f"m{proto}.pdparams"), return_numpy=True)
        assert set(mine) == set(ref) and all(np.array_equal(mine[k], ref[k]) for k in ref)
    paddle.save(opt.state_dict(), str(tmp_path / "o.pdopt"))
    mine, ref = load_state_dict(str(tmp_path / "o.pdopt")), paddle.load(str(tmp_path / "o.pdopt"), return_numpy=True)
    assert set(mine) == set(ref) and mine["LR_Scheduler"] == ref["LR_Scheduler"]
    assert all(np.array_equal(mine[k], ref[k]) for k in ref if k != "LR_Scheduler")


def test_models_are_written_as_safetensors_and_safetensors_wins(tmp_path, tiny):
    from utils.modeling import load_model, save_model
    bert, _ = tiny
    model, tok, _ = load_model(bert, "classification", 2)
    save_model(model, tok, str(tmp_path / "m"), {"task_type": "classification"})
    assert "model.safetensors" in os.listdir(tmp_path / "m")
    assert not [f for f in os.listdir(tmp_path / "m") if f.endswith(".pdparams")]
    # a model_state.pdparams beside it is ignored (never unpickled)
    marker = tmp_path / "MARKER"
    with open(tmp_path / "m" / "model_state.pdparams", "wb") as f:
        pickle.dump(_Boom(marker), f)
    again, _, _ = load_model(str(tmp_path / "m"))
    assert not marker.exists()
    a, b = model.state_dict(), again.state_dict()
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


# --------------------------------------------------------------------------- 2. no directory is destroyed
def _model_run(tmp_path, bert):
    """A run directory (as run_glue_ofa.py leaves it) with a model in it and a user's notes."""
    from utils.modeling import load_model, save_model
    run = tmp_path / "ofa_run"
    model, tok, _ = load_model(bert, "classification", 2)
    save_model(model, tok, str(run / "width_1.0000"), {"task_type": "classification", "task_name": "SST-2"})
    (run / "notes.txt").write_text("my notes\n")
    (run / "results.json").write_text("[]\n")
    text = tmp_path / "t.txt"
    text.write_text("good w1\n")
    return run, text


def test_export_refuses_an_output_dir_that_holds_its_source(tmp_path, tiny, capsys):
    bert, _ = tiny
    run, text = _model_run(tmp_path, bert)
    before = tree(run)
    exits_2("export_model.py", "--model_name_or_path", run / "width_1.0000", "--sub_model_output_dir", run,
            "--check_text", text, "--max_seq_length", "32")
    one_error_line(capsys, "--sub_model_output_dir", "contains the input --model_name_or_path")
    assert tree(run) == before
    # a directory holding anything but a suite model (the notes) is not replaced either
    other = tmp_path / "notes_dir"
    other.mkdir()
    (other / "notes.txt").write_text("keep\n")
    exits_2("export_model.py", "--model_name_or_path", run / "width_1.0000", "--sub_model_output_dir", other,
            "--check_text", text)
    one_error_line(capsys, "notes.txt")
    assert (other / "notes.txt").read_text() == "keep\n"


def test_prune_refuses_an_output_dir_above_its_source(tmp_path, tiny, capsys):
    bert, _ = tiny
    run, text = _model_run(tmp_path, bert)
    before = tree(tmp_path)
    exits_2("prune.py", "--model_name_or_path", run / "width_1.0000", "--output_dir", tmp_path,
            "--prune_vocab", "--vocab_texts", text)
    one_error_line(capsys, "--output_dir", "contains the input --model_name_or_path")
    assert tree(tmp_path) == before


# --------------------------------------------------------------------------- 3. one run per output directory
def test_a_second_run_into_a_busy_output_dir_gets_one_line_naming_the_first(tmp_path, tiny, capsys):
    bert, glue = tiny
    out = tmp_path / "run"
    args = [*COMMON, "--model_name_or_path", bert, "--data_dir", glue, "--output_dir", out]
    first = subprocess.Popen([sys.executable, os.path.join(REPO, "run_glue.py"), *map(str, args),
                              "--max_steps", "120", "--save_steps", "60"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO,
                             env=dict(os.environ, PYTHONPATH=REPO))
    try:
        deadline = time.time() + 120
        while not (out / ".run.lock").exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert (out / ".run.lock").exists(), "the first run never took the lock"
        exits_2("run_glue.py", *args, "--max_steps", "10", "--save_steps", "10")
        assert first.poll() is None, "the first run ended before the second one was refused: no collision tested"
        one_error_line(capsys, "in use by another run", f"pid {first.pid} on host {socket.gethostname()}")
        assert first.wait(timeout=600) == 0
    finally:
        if first.poll() is None:
            first.kill()
    assert [r["step"] for r in read_json(out / "results.json")] == [60, 120]
    assert read_json(out / "all_results.json")["steps"] == 120
    assert not (out / ".run.lock").exists()


def test_a_stale_lock_is_reported_and_taken_over_only_when_asked(tmp_path, tiny, capsys):
    bert, glue = tiny
    out = tmp_path / "run"
    out.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    (out / ".run.lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": "then"}))
    args = [*COMMON, "--model_name_or_path", bert, "--data_dir", glue, "--output_dir", out, "--max_steps", "10",
            "--save_steps", "10"]
    exits_2("run_glue.py", *args)
    one_error_line(capsys, "did not finish", f"pid {dead.pid}", "--resume", "--overwrite_output_dir")
    run_in_process("run_glue.py", *args, "--overwrite_output_dir")
    assert [r["step"] for r in read_json(out / "results.json")] == [10]
    assert not (out / ".run.lock").exists()


# --------------------------------------------------------------------------- 4. overwrite starts clean records
def test_overwrite_output_dir_starts_clean_records_and_a_used_dir_is_refused(tmp_path, tiny, capsys):
    bert, glue = tiny
    out = tmp_path / "run"
    base = [*COMMON, "--model_name_or_path", bert, "--data_dir", glue, "--output_dir", out]
    run_in_process("run_glue.py", *base, "--max_steps", "20", "--save_steps", "10")
    (out / "notes.txt").write_text("mine\n")
    run_in_process("run_glue.py", *base, "--max_steps", "10", "--save_steps", "10", "--overwrite_output_dir")
    assert [r["step"] for r in read_json(out / "results.json")] == [10]
    assert read_json(out / "all_results.json")["steps"] == 10
    assert (out / "notes.txt").read_text() == "mine\n"
    # best/ and results.json without checkpoints: another run's files, not reused silently
    import shutil
    shutil.rmtree(out / "checkpoints")
    capsys.readouterr()
    exits_2("run_glue.py", *base, "--max_steps", "10", "--save_steps", "10")
    one_error_line(capsys, "another run's files", "--overwrite_output_dir")


# --------------------------------------------------------------------------- 5 + 8. kill during save, resume; unfinished best/
def test_kill_between_evaluation_and_checkpoint_then_resume_gives_identical_records(tmp_path, tiny):
    import logging
    from utils.modeling import load_model
    bert, glue = tiny
    base = [*COMMON, "--model_name_or_path", bert, "--data_dir", glue, "--max_steps", "18", "--save_steps", "6"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    run_in_process("run_glue.py", *base, "--output_dir", full)
    r = run_script("run_glue.py", *base, "--output_dir", cut, "--debug_exit_before_checkpoint", "12", check=False)
    assert r.returncode == 3
    assert [rec["step"] for rec in read_json(cut / "results.json")] == [6, 12]     # evaluated, not checkpointed
    # 8: the killed run's best/ says so, and the next stage warns
    run = read_json(cut / "best" / "config.json")["compression_suite"]["run"]
    assert run["finished"] is False and run["total_steps"] == 18
    seen = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: seen.append(record.getMessage())
    logging.getLogger("bert_suite").addHandler(handler)
    load_model(str(cut / "best"))
    assert any("did not finish" in m and "step 6 of 18" in m for m in seen), seen
    run_script("run_glue.py", *base, "--output_dir", cut, "--resume")   # a fresh process: paddle's parameter names
    assert (cut / "results.json").read_bytes() == (full / "results.json").read_bytes()
    assert read_json(cut / "best" / "config.json")["compression_suite"]["run"]["finished"] is True
    assert read_json(full / "last" / "config.json")["compression_suite"]["run"]["finished"] is True


# --------------------------------------------------------------------------- 6 + 7. found before loading, one line
def test_bad_lengths_and_output_paths_fail_before_loading(tmp_path, tiny, capsys, monkeypatch):
    from helpers import script_module
    bert, glue = tiny
    for script in ("run_glue.py", "run_glue_ofa.py"):
        monkeypatch.setattr(script_module(script), "load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    base = [*COMMON[:2], "--model_name_or_path", bert, "--data_dir", glue, "--device", "cpu"]
    out = tmp_path / "out"
    exits_2("run_glue.py", *base, "--output_dir", out, "--max_seq_length", "100")
    one_error_line(capsys, "--max_seq_length 100", "64 position embeddings")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    exits_2("run_glue.py", *base, "--output_dir", a_file)
    one_error_line(capsys, f"--output_dir {a_file} exists and is not a directory")
    exits_2("run_glue.py", *base, "--output_dir", a_file / "sub")
    one_error_line(capsys, "is a file, not a directory")
    exits_2("run_glue_ofa.py", *base, "--output_dir", out, "--max_seq_length", "65")
    one_error_line(capsys, "--max_seq_length 65")
    assert not out.exists() and a_file.read_text() == "x"


@pytest.fixture(scope="module")
def static_model(tmp_path_factory, tiny):
    from utils import inference
    from utils.modeling import load_model
    bert, _ = tiny
    model, tok, _ = load_model(bert, "classification", 2)
    model.eval()
    prefix = str(tmp_path_factory.mktemp("static") / "model")
    inference.save_static(model, prefix)
    inference.write_info(prefix, {"task_type": "classification", "label_list": ["0", "1"], "max_seq_length": 16,
                                  "tokenizer_dir": "model" + inference.TOKENIZER_SUFFIX})
    tok.save_pretrained(prefix + inference.TOKENIZER_SUFFIX)
    return prefix


def test_predict_and_benchmark_bad_files_are_one_line(tmp_path, static_model):
    import shutil
    bad_text = tmp_path / "latin1.txt"
    bad_text.write_bytes("good w1\nna\xefve caf\xe9\n".encode("latin-1"))
    out = tmp_path / "pred.tsv"
    r = run_script("predict.py", "--model_prefix", static_model, "--input_file", bad_text, "--output_file", out,
                   check=False)
    one_error_line(r, f"{bad_text}:2", "not UTF-8")
    assert not out.exists()
    damaged = tmp_path / "damaged"
    shutil.copytree(os.path.dirname(static_model), damaged)
    params = damaged / "model.pdiparams"
    params.write_bytes(params.read_bytes()[:100])
    text = tmp_path / "t.txt"
    text.write_text("good w1\n" + " ".join(["w2"] * 40) + "\n")
    r = run_script("predict.py", "--model_prefix", damaged / "model", "--input_file", text, "--output_file", out,
                   check=False)
    one_error_line(r, f"--model_prefix {damaged / 'model'}", "damaged")
    assert not out.exists()
    r = run_script("benchmark.py", "--models", damaged / "model", "--batch_sizes", "1", "--repeats", "3",
                   "--max_seq_length", "16", check=False)
    one_error_line(r, f"--models {damaged / 'model'}", "damaged")
    # a long line is truncated, and predict says so
    r = run_script("predict.py", "--model_prefix", static_model, "--input_file", text, "--output_file", out)
    assert "1 of 2 examples are longer than 16 tokens" in r.stderr and f"{text}:2" in r.stderr
    assert len(out.read_text().splitlines()) == 2


def test_resume_restores_a_model_dir_whose_swap_was_killed(tmp_path):
    """Killed inside publish_dir: best/ parked beside it, the new one not yet
    in place.  The next stage is told where the old one is; --resume puts it back."""
    from utils.errors import UserError
    from utils.modeling import load_model
    from utils.output_dir import claim_run_dir
    parked = tmp_path / ".best.old-x1y2" / "d"
    parked.mkdir(parents=True)
    (parked / "config.json").write_text("{}")
    with pytest.raises(UserError, match=r"interrupted.*\.best\.old-x1y2"):
        load_model(str(tmp_path / "best"))
    claim_run_dir(str(tmp_path), resume=True)
    assert (tmp_path / "best" / "config.json").read_text() == "{}"
    assert not (tmp_path / ".best.old-x1y2").exists()


def test_object_arrays_and_foreign_objects_are_refused(tmp_path):
    from utils.errors import UserError
    from utils.safe_pickle import load_state_dict
    path = tmp_path / "obj.pdparams"
    with open(path, "wb") as f:
        pickle.dump({"w": np.array([1, "a"], dtype=object)}, f)
    with pytest.raises(UserError, match="refused"):
        load_state_dict(str(path))
    with open(path, "wb") as f:
        pickle.dump({"w": {1, 2}}, f)     # a set needs no global, but is no weight
    with pytest.raises(UserError, match="refused to load: entry 'w' holds a set"):
        load_state_dict(str(path))
    import datetime
    with open(path, "wb") as f:
        pickle.dump({"w": datetime.date(2026, 1, 1)}, f)
    with pytest.raises(UserError, match="global datetime.date"):
        load_state_dict(str(path))
