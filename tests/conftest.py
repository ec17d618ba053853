import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import utils  # noqa: E402,F401  (stack fixes before any test imports paddle)

import pytest  # noqa: E402

from helpers import run_script, write_rte, write_sst2, write_stsb, write_tiny_bert  # noqa: E402

FAST = ["--max_seq_length", "32", "--batch_size", "16", "--logging_steps", "10", "--device", "cpu"]


@pytest.fixture(scope="session")
def glue_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("glue")
    write_sst2(str(d / "SST-2"))
    write_rte(str(d / "RTE"))
    write_stsb(str(d / "STS-B"))
    return str(d)


@pytest.fixture(scope="session")
def sst2_teacher(tmp_path_factory, glue_data):
    """A tiny BERT fine-tuned on the learnable SST-2 stand-in (dev acc ~1.0)."""
    root = tmp_path_factory.mktemp("teacher")
    bert = write_tiny_bert(str(root / "bert"))
    out = str(root / "run")
    run_script("run_glue.py", "--task_name", "SST-2", "--model_name_or_path", bert, "--data_dir", glue_data,
               "--output_dir", out, "--max_steps", "80", "--save_steps", "40", "--learning_rate", "2e-3",
               "--warmup_proportion", "0.1", *FAST)
    return os.path.join(out, "best")


@pytest.fixture(scope="session")
def sst2_ofa(tmp_path_factory, glue_data, sst2_teacher):
    """run_glue_ofa.py on that teacher with widths 1.0, 3/4, 1/2."""
    out = str(tmp_path_factory.mktemp("ofa") / "run")
    r = run_script("run_glue_ofa.py", "--task_name", "SST-2", "--model_name_or_path", sst2_teacher,
                   "--data_dir", glue_data, "--output_dir", out, "--max_steps", "40", "--save_steps", "20",
                   "--learning_rate", "1e-3", "--width_mult_list", "1.0", "3/4", "1/2", *FAST)
    return out, r
