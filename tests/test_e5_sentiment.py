"""benchmarks/e5_sentiment.py: every command line it builds is one its target
script accepts, and the table is assembled from the files the stages write
(no training: the stages' commands are recorded, not run)."""
import json

import pytest

from helpers import script_module
from utils.errors import UserError

STAGE_SCRIPTS = {"vocab": ["prune.py"], "minilm": ["run_glue.py"], "teacher": ["run_glue.py"] * 2,
                 "ofa": ["run_glue_ofa.py"], "export": ["export_model.py"] * 4, "int8": ["quantize.py"],
                 "bench": ["benchmark.py"]}


@pytest.fixture
def e5s(monkeypatch):
    mod = script_module("benchmarks/e5_sentiment.py")
    calls = []

    def fake_run(log, script, *argv, may_fail=False):
        calls.append((script, [str(a) for a in argv]))
        return 0, ['{"score": 1}\n']
    monkeypatch.setattr(mod, "run", fake_run)
    monkeypatch.setattr(mod, "write_json_atomic", lambda path, obj: None)
    import e5_vocab_prune
    from utils import assets
    monkeypatch.setattr(e5_vocab_prune, "converted_e5", lambda: "/nonexistent/e5")
    monkeypatch.setattr(assets, "converted_minilm", lambda: "/nonexistent/minilm")
    return mod, calls


def fake_exports(tmp_path):
    for name in ("teacher", "d0.5", "w0.5_d0.5", "w0.5_d0.5_int8"):
        d = tmp_path / "export" / name / "static"
        d.mkdir(parents=True)
        (d / "model.pdiparams").write_bytes(b"")


@pytest.mark.parametrize("stage", sorted(STAGE_SCRIPTS))
def test_stage_command_parses(e5s, stage, tmp_path):
    mod, calls = e5s
    if stage == "bench":
        fake_exports(tmp_path)
    a = mod.parse_args(["--output_dir", str(tmp_path), "--minilm"])
    getattr(mod, "stage_" + stage)(str(tmp_path), a)
    assert [c[0] for c in calls] == STAGE_SCRIPTS[stage]
    for script, argv in calls:
        try:
            script_module(script).parse_args(argv)
        except UserError:
            pass        # a check beyond the flags (files that a real run would have written)


def test_table_from_stage_files(tmp_path, capsys):
    mod = script_module("benchmarks/e5_sentiment.py")
    o = str(tmp_path)
    fake_exports(tmp_path)
    (tmp_path / "metric.json").write_text(json.dumps({"teacher": 0.9, "d0.5": 0.85, "w0.5_d0.5": 0.8,
                                                      "w0.5_d0.5_int8": 0.79}))
    rows = [{"model": n, "batch_size": bs, "median_ms": ms * bs, "speedup": 100.0 / ms, "params": 2e7}
            for n, ms in (("teacher", 100.0), ("d0.5", 50.0), ("w0.5_d0.5", 25.0), ("w0.5_d0.5_int8", 12.5))
            for bs in (1, 16)]
    (tmp_path / "benchmark.json").write_text(json.dumps({"rows": rows}))
    (tmp_path / "int8.json").write_text(json.dumps({"refused": False, "fp32": 0.8, "int8": 0.79, "drop": 0.01,
                                                    "agreement": {"value": 0.97}}))
    (tmp_path / "times.json").write_text(json.dumps({"teacher": 600.0}))
    mod.stage_table(o, mod.parse_args(["--output_dir", o]))
    out = capsys.readouterr().out
    assert "| width 1/2 x depth 1/2, INT8 | 6 | 20.00M | 0.7900 | -0.1100 | 12.5 ms | 8.00x | 200.0 ms | 8.00x |" \
        in out
    assert "rounds (run_glue.py's best dev acc): teacher_r1 , teacher " in out
    assert "INT8 guard (accepted): dev 0.8000 -> 0.7900" in out and "teacher 10.0 min" in out
