"""compress.py on the tiny model: a budget picks the candidate, an impossible
one exits 1 without deploy/, a killed run resumes without retraining, a
changed budget re-decides from the measured table, bad input exits 2.

One OFA run (widths 3/4 and 1/2, 20 steps) is shared by every test: the
module fixture runs compress.py, kills it after the export of width 3/4
(the test hook ``--debug_exit_after_stage``) and runs the same command again.
"""
import json
import os

import pytest

from helpers import read_json, run_in_process, run_script

GRID = ["--task_name", "SST-2", "--width_mult_list", "3/4", "1/2", "--max_steps", "20", "--save_steps", "10",
        "--train_max_seq_length", "32", "--train_batch_size", "16", "--learning_rate", "1e-3",
        "--max_seq_length", "32", "--repeats", "5"]


def _cmd(teacher, data, out, *budget, grid=GRID):
    return ["--model_name_or_path", teacher, "--data_dir", data, "--output_dir", out, *grid, *budget]


def _mtimes(root):
    return {os.path.join(d, f): os.stat(os.path.join(d, f)).st_mtime_ns for d, _, fs in os.walk(root) for f in fs}


def _stage_runs(stdout):
    """The stage scripts compress.py started (its '$ script ...' lines)."""
    return [os.path.basename(line.split()[1]) for line in stdout.splitlines() if line.startswith("$ ")]


@pytest.fixture(scope="module")
def compressed(tmp_path_factory, glue_data, sst2_teacher):
    out = str(tmp_path_factory.mktemp("compress") / "run")
    cmd = _cmd(sst2_teacher, glue_data, out, "--size_budget_mb", "100")
    killed_in_ofa = run_script("compress.py", *cmd, "--debug_ofa_exit_after_step", "10", check=False)
    killed = run_script("compress.py", *cmd, "--debug_exit_after_stage", "export_w0.7500", check=False)
    after_kill = {"stages": sorted(os.listdir(os.path.join(out, "stages"))),
                  "ofa": _mtimes(os.path.join(out, "ofa")),
                  "exports": _mtimes(os.path.join(out, "candidates"))}
    resumed = run_script("compress.py", *cmd)
    return {"out": out, "teacher": sst2_teacher, "data": glue_data, "killed_in_ofa": killed_in_ofa,
            "killed": killed, "after_kill": after_kill, "resumed": resumed, "decision": read_json(os.path.join(out, "decision.json"))}


def test_a_killed_run_resumes_without_retraining_finished_stages(compressed):
    killed, resumed, before = compressed["killed"], compressed["resumed"], compressed["after_kill"]
    # killed inside OFA after its step-10 checkpoint: the next run continues from it
    in_ofa = compressed["killed_in_ofa"]
    assert in_ofa.returncode == 3 and "error: the OFA stage failed (exit 3)" in in_ofa.stderr, in_ofa.stderr[-2000:]
    assert "resuming from its last checkpoint" in killed.stdout and "--resume" in killed.stdout
    assert "resumed from step 10" in killed.stdout + killed.stderr
    assert killed.returncode == 3, killed.stderr[-2000:]
    assert before["stages"] == ["export_teacher.json", "export_w0.7500.json", "ofa.json"]
    assert _stage_runs(killed.stdout) == ["run_glue_ofa.py", "export_model.py", "export_model.py"]
    # the rerun trains nothing and exports only what was missing, then measures and decides
    assert _stage_runs(resumed.stdout) == ["export_model.py", "benchmark.py"], resumed.stdout[-3000:]
    assert "ofa: finished earlier, skipped" in resumed.stdout
    assert "export: teacher (1/3) finished earlier, skipped" in resumed.stdout
    out = compressed["out"]
    assert all(_mtimes(os.path.join(out, "ofa"))[f] == t for f, t in before["ofa"].items())
    assert all(_mtimes(os.path.join(out, "candidates"))[f] == t for f, t in before["exports"].items())
    names = [c["name"] for c in compressed["decision"]["candidates"]]
    assert names == ["teacher", "w0.7500", "w0.5000"]
    assert compressed["decision"]["chosen"] in names and os.path.isfile(os.path.join(out, "deploy", "model.pdiparams"))
    for line in ("chosen:", "latency", "size"):      # the final lines
        assert line in resumed.stdout


def test_a_budget_only_the_narrowest_meets_picks_it_without_retraining(compressed):
    cands = {c["name"]: c for c in compressed["decision"]["candidates"]}
    sizes = [cands[n]["size_mb"] for n in ("teacher", "w0.7500", "w0.5000")]
    assert sizes[0] > sizes[1] > sizes[2]
    assert cands["teacher"]["params"] > cands["w0.7500"]["params"] > cands["w0.5000"]["params"]
    out = compressed["out"]
    before = _mtimes(os.path.join(out, "ofa"))
    budget = (sizes[1] + sizes[2]) / 2
    r = run_script("compress.py", *_cmd(compressed["teacher"], compressed["data"], out, "--size_budget_mb",
                                        f"{budget:.6f}"))
    assert _stage_runs(r.stdout) == []          # every trained, exported and measured candidate reused
    assert _mtimes(os.path.join(out, "ofa")) == before
    decision = read_json(os.path.join(out, "decision.json"))
    assert decision["chosen"] == "w0.5000" and decision["meets"] == {"teacher": False, "w0.7500": False,
                                                                   "w0.5000": True}
    assert "chosen: w0.5000" in r.stdout
    with open(os.path.join(out, "deploy", "model.pdiparams"), "rb") as a, \
            open(os.path.join(out, "candidates", "w0.5000", "static", "model.pdiparams"), "rb") as b:
        assert a.read() == b.read()
    assert read_json(os.path.join(out, "deploy", "choice.json"))["chosen"]["name"] == "w0.5000"
    report = open(os.path.join(out, "report.md"), encoding="utf-8").read()
    assert "**w0.5000 (chosen)**" in report and f"size <= {float(f'{budget:.6f}'):g} MB" in report


def test_an_impossible_budget_exits_1_names_the_closest_and_writes_no_deploy(compressed):
    out = compressed["out"]
    r = run_script("compress.py", *_cmd(compressed["teacher"], compressed["data"], out, "--latency_budget_ms",
                                        "0.001"), check=False)
    assert r.returncode == 1, r.stderr[-2000:]
    assert _stage_runs(r.stdout) == []
    decision = read_json(os.path.join(out, "decision.json"))
    fastest = min(decision["candidates"], key=lambda c: c["latency_ms"])["name"]
    assert decision["chosen"] is None and decision["closest"] == fastest
    assert f"no candidate meets the budgets; closest: {fastest}" in r.stderr
    assert "--latency_budget_ms 0.001 ms" in r.stderr and "over by" in r.stderr
    assert not os.path.exists(os.path.join(out, "deploy"))
    assert "No candidate meets the budget" in open(os.path.join(out, "report.md"), encoding="utf-8").read()


BAD = [(["--latency_budget_ms", "0"], "--latency_budget_ms must be a positive number"),
       (["--size_budget_mb", "-5"], "--size_budget_mb must be a positive number"),
       (["--max_metric_drop", "-0.01"], "--max_metric_drop must be >= 0"),
       (["--latency_budget_ratio", "0"], "--latency_budget_ratio must be a positive number"),
       ([], "give at least one budget"),
       (["--latency_budget_ms", "5", "--batch_size", "0"], "--batch_size (of the latency benchmark) must be >= 1"),
       (["--latency_budget_ms", "5", "--max_seq_length", "65"], "--max_seq_length 65 is longer than the model's 64"),
       (["--latency_budget_ms", "5", "--max_seq_length", "2"], "--max_seq_length must be at least 3"),
       (["--latency_budget_ms", "5", "--int8", "--int8_qat_steps", "-1"], "--int8_qat_steps must be >= 0"),
       (["--latency_budget_ms", "5", "--int8_qat_steps", "5"], "--int8_qat_steps tunes the weights before INT8: "
                                                               "give --int8 as well")]


@pytest.mark.parametrize("budget,message", BAD, ids=[b[1].split()[0] + str(i) for i, b in enumerate(BAD)])
def test_bad_budgets_batch_or_length_exit_2_and_write_nothing(budget, message, tmp_path, capsys, glue_data,
                                                              sst2_teacher):
    out = str(tmp_path / "new")
    with pytest.raises(SystemExit) as e:
        run_in_process("compress.py", *_cmd(sst2_teacher, glue_data, out, *budget))
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not os.path.exists(out)


def test_an_output_dir_of_another_run_exits_2_and_is_left_alone(compressed, tmp_path, capsys):
    out = compressed["out"]
    before = _mtimes(out)
    other_grid = [("1/2" if a == "3/4" else a) for a in GRID]       # widths 1/2 only: another run
    with pytest.raises(SystemExit) as e:
        run_in_process("compress.py", *_cmd(compressed["teacher"], compressed["data"], out, "--size_budget_mb", "9",
                                            grid=other_grid))
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "holds another run's stages" in err[0] and "widths" in err[0]
    assert _mtimes(out) == before
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit) as e:
        run_in_process("compress.py", *_cmd(compressed["teacher"], compressed["data"], str(foreign),
                                            "--size_budget_mb", "9"))
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "not a compress.py run" in err[0]
    assert os.listdir(foreign) == ["notes.txt"]


def test_int8_with_qat_tunes_each_candidate_from_its_dynamic_export(compressed, tmp_path):
    """--int8 --int8_qat_steps N on a finished run (a copy): nothing is
    retrained; quantize.py gets --qat_steps N and the candidate's own
    dynamic/ export, its INT8 info carries the tuning record, and a rerun
    with another N quantizes again (the plain-PTQ records are not reused)."""
    import shutil
    out = str(tmp_path / "run")
    shutil.copytree(compressed["out"], out)
    cmd = _cmd(compressed["teacher"], compressed["data"], out, "--size_budget_mb", "100", "--int8",
               "--int8_qat_steps", "3", "--int8_batch_num", "2")
    r = run_script("compress.py", *cmd)
    runs = [line for line in r.stdout.splitlines() if line.startswith("$ ") and "quantize.py" in line]
    assert len(runs) == 3 and "run_glue_ofa.py" not in r.stdout, r.stdout[-3000:]
    for line, name in zip(runs, ("teacher", "w0.7500", "w0.5000")):
        want = os.path.join(out, "candidates", name, "dynamic")
        assert f"--qat_steps 3 --qat_model {want} --resume" in line, line   # a killed tuning continues
    info = read_json(os.path.join(out, "candidates", "w0.5000_int8", "static", "model.info.json"))
    assert info["int8"] and info["quantization"]["qat"]["steps"] == 3
    assert os.path.isfile(os.path.join(out, "stages", "int8_w0.5000_int8_qat3.json"))
    again = run_script("compress.py", *cmd[:-4], "--int8_qat_steps", "2", "--int8_batch_num", "2")
    assert again.stdout.count("quantize.py --model_prefix") == 3, again.stdout[-3000:]
    info = read_json(os.path.join(out, "candidates", "w0.5000_int8", "static", "model.info.json"))
    assert info["quantization"]["qat"]["steps"] == 2


def test_the_demo_is_one_compress_command_with_its_budget(tmp_path, glue_data, sst2_teacher):
    """demo.py's step 3 is a compress.py command line that compress.py accepts
    as it stands (its own parser and checks), with the demo's stated budget."""
    import sys
    from helpers import REPO, script_module
    sys.path.insert(0, REPO)
    import demo
    teacher = tmp_path / "teacher"           # the demo's MiniLM has 512 positions, the tiny model 64
    teacher.mkdir()
    cfg = read_json(os.path.join(sst2_teacher, "config.json"))
    (teacher / "config.json").write_text(json.dumps(dict(cfg, max_position_embeddings=512)))
    a = demo.parser().parse_args(["--output_dir", str(tmp_path / "demo")])
    out = str(tmp_path / "demo" / "compress")
    argv = [str(x) for x in demo.compress_argv(a, str(teacher), glue_data, out)]
    args = script_module("compress.py").parse_args(argv)
    assert (args.latency_budget_ratio, args.max_metric_drop, args.batch_size, args.max_seq_length) == (0.75, 0.04, 1, 128)
    assert args.data_aug and args.width_mult_list == ["1/2"] and args.depth_mult_list == ["1.0", "1/2"]
    assert not os.path.exists(out)      # parsing and checking write nothing


def test_the_decision_is_a_pure_function_of_the_table_and_the_budgets():
    """A hand-made table: --latency_budget_ratio is a fraction of the
    teacher's measured latency; the best metric within every budget wins;
    with none, the closest (smallest worst overshoot relative to its budget)
    is named with what it misses."""
    from utils import budget
    table = [{"name": "teacher", "metric": 0.85, "latency_ms": 10.0, "size_mb": 90.0},
             {"name": "a", "metric": 0.84, "latency_ms": 7.0, "size_mb": 70.0},
             {"name": "b", "metric": 0.83, "latency_ms": 5.5, "size_mb": 60.0},
             {"name": "c", "metric": 0.80, "latency_ms": 4.0, "size_mb": 55.0}]

    def decide(**kw):
        return budget.decide(table, budget.limits(budget.Budgets(**kw), 10.0), 0.85)

    d = decide(latency_budget_ratio=0.6)
    assert d["limits"] == {"latency_ms": 6.0} and d["chosen"] == "b"
    assert d["meets"] == {"teacher": False, "a": False, "b": True, "c": True}
    assert decide(latency_budget_ratio=0.6, size_budget_mb=58)["chosen"] == "c"
    assert decide(max_metric_drop=0.0)["chosen"] == "teacher"
    d = decide(latency_budget_ms=6.0, max_metric_drop=0.01)
    assert d["chosen"] is None and d["closest"] == "a"
    assert d["failed"] == pytest.approx({"latency_ms": 1.0})
    assert budget.describe_failure(d) == ["--latency_budget_ms 6 ms: a is 7 ms, over by 1 ms (17%)"]
