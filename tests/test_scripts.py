"""scripts/run_*.sh: every wrapper's command line is one its script accepts.

Each wrapper runs with a ``python`` on PATH that only records its arguments;
those are then parsed by the target script's own ``parse_args`` (argparse
exits 2 on a flag the script does not have)."""
import os
import stat
import subprocess

import pytest

from helpers import REPO, script_module

WRAPPERS = {"run_glue.sh": "run_glue.py", "run_glue_ofa.sh": "run_glue_ofa.py",
            "run_export_model.sh": "export_model.py", "run_msra_ner.sh": "run_msra_ner.py",
            "run_msra_ner_ofa.sh": "run_msra_ner_ofa.py", "run_msra_export.sh": "export_model.py"}


def test_every_stage_has_a_wrapper():
    assert sorted(WRAPPERS) == sorted(f for f in os.listdir(os.path.join(REPO, "scripts")) if f.endswith(".sh"))


@pytest.mark.parametrize("wrapper", sorted(WRAPPERS))
def test_wrapper_command_parses(wrapper, tmp_path):
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "python").write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$ARGS_OUT"\n')
    (shim / "python").chmod(stat.S_IRWXU)
    out = tmp_path / "args.txt"
    env = dict(os.environ, PATH=f"{shim}{os.pathsep}{os.environ['PATH']}", ARGS_OUT=str(out), DEVICE="cpu")
    extra = ["--check_examples", "7"] if "export" in wrapper else ["--seed", "7"]
    r = subprocess.run(["bash", os.path.join(REPO, "scripts", wrapper), *extra], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    argv = out.read_text().splitlines()
    assert argv[:2] == ["-u", "./" + WRAPPERS[wrapper]], argv
    args = script_module(WRAPPERS[wrapper]).parse_args(argv[2:])
    assert args.device == "cpu"
    assert getattr(args, extra[0][2:]) == 7      # extra arguments reach the script
