"""Several devices: run_glue.py under `python -m paddle.distributed.launch` with
two CPU processes.  With the same global batch, two processes of 8 examples
must train exactly as one process of 16 (gradients all-reduced), and only
rank 0 writes."""
import os
import subprocess
import sys

import numpy as np

from helpers import REPO, read_json, run_script, write_sst2, write_tiny_bert

ARGS = ["--task_name", "SST-2", "--max_steps", "30", "--save_steps", "15", "--max_seq_length", "32",
        "--learning_rate", "2e-3", "--logging_steps", "10", "--device", "cpu"]


def assert_same_training(a, b):
    """The weights of two runs that trained on the same global batches:
    equal but for rounding.  Two processes sum half-batch gradients in
    another order (and run their GEMMs on one thread each), and AdamW divides
    each element's step by its own gradient scale, so an element whose
    gradient is near zero can move by a small part of one step (learning rate
    1e-3 here) differently; a run that trained on other batches or averaged
    the gradients wrongly moves most elements by about a step."""
    assert set(a) == set(b)
    diffs = np.concatenate([np.abs(np.asarray(a[k], dtype=np.float64) - b[k]).ravel() for k in sorted(a)])
    worst = {k: float(np.abs(np.asarray(a[k]) - b[k]).max()) for k in a}
    assert diffs.max() < 1e-4 and diffs.mean() < 1e-7, (diffs.max(), diffs.mean(),
                                                       sorted(worst.items(), key=lambda kv: -kv[1])[:3])


def test_two_processes_equal_one_process_with_the_same_global_batch(tmp_path):
    from utils.modeling import read_state_dict
    model = write_tiny_bert(str(tmp_path / "bert"))
    data = str(tmp_path / "glue")
    write_sst2(os.path.join(data, "SST-2"))
    single, dist = str(tmp_path / "single"), str(tmp_path / "dist")
    run_script("run_glue.py", *ARGS, "--model_name_or_path", model, "--data_dir", data, "--output_dir", single,
               "--batch_size", "16")
    cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir",
           str(tmp_path / "log"), os.path.join(REPO, "run_glue.py"), *ARGS, "--model_name_or_path", model,
           "--data_dir", data, "--output_dir", dist, "--batch_size", "8"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO,
                       env=dict(os.environ, PYTHONPATH=REPO))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "devices = 2" in r.stdout + r.stderr
    a = read_state_dict(os.path.join(single, "last", "model.safetensors"))
    b = read_state_dict(os.path.join(dist, "last", "model.safetensors"))
    assert_same_training(a, b)
    assert [rec["step"] for rec in read_json(os.path.join(dist, "results.json"))] == [15, 30]


def test_ofa_two_processes_equal_one_process(tmp_path, sst2_teacher, glue_data):
    """run_glue_ofa.py under the launcher: importance and reordering happen
    before the DataParallel wrap (the same on every rank), so two processes
    of 8 end with the same supernet as one process of 16; rank 0 saves."""
    from utils.modeling import read_state_dict
    ofa = ["--task_name", "SST-2", "--model_name_or_path", sst2_teacher, "--data_dir", glue_data, "--max_steps", "8",
           "--save_steps", "8", "--max_seq_length", "32", "--learning_rate", "1e-3", "--logging_steps", "4",
           "--device", "cpu", "--width_mult_list", "1.0", "1/2"]
    single, dist = str(tmp_path / "single"), str(tmp_path / "dist")
    run_script("run_glue_ofa.py", *ofa, "--output_dir", single, "--batch_size", "16")
    cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir",
           str(tmp_path / "log"), os.path.join(REPO, "run_glue_ofa.py"), *ofa, "--output_dir", dist,
           "--batch_size", "8"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO,
                       env=dict(os.environ, PYTHONPATH=REPO))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    a = read_state_dict(os.path.join(single, "final", "model.safetensors"))
    b = read_state_dict(os.path.join(dist, "final", "model.safetensors"))
    assert_same_training(a, b)
    ta, tb = read_json(os.path.join(single, "all_results.json")), read_json(os.path.join(dist, "all_results.json"))
    assert [row["score"] for row in ta["rows"]] == [row["score"] for row in tb["rows"]]
