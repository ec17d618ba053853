import inspect
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import utils  # noqa: E402,F401  (stack fixes before any test imports paddle)

import pytest  # noqa: E402

from helpers import run_script, write_rte, write_sst2, write_stsb, write_tiny_bert  # noqa: E402

FAST = ["--max_seq_length", "32", "--batch_size", "16", "--logging_steps", "10", "--device", "cpu"]

# --------------------------------------------------------------------------- test tiers
# A test is "slow" when it, a fixture it uses, or a function of its module it
# calls, runs one of the suite's scripts or a fresh Python: tests/helpers.py's
# run_script (a fresh process) or run_in_process (this one), a script's
# main([...]), or sys.executable (training, export, quantization, imports).
# `make test-fast` runs the others (-m "not slow"); `make test` runs all.
SLOW_CALLS = ("run_script(", "run_in_process(", ".main([", "sys.executable")


def _source(obj):
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return ""


def _runs_a_script(func, module, seen):
    """Whether ``func`` (or a function of ``module`` it names) calls a script runner."""
    func = getattr(func, "__wrapped__", func)
    if func in seen:
        return False
    seen.add(func)
    if any(c in _source(func) for c in SLOW_CALLS):
        return True
    code = getattr(func, "__code__", None)
    names = set(code.co_names) if code else set()
    for name in names:
        other = getattr(module, name, None)
        if inspect.isfunction(other) and other.__module__ == module.__name__ \
                and _runs_a_script(other, module, seen):
            return True
    return False


def _is_slow(item):
    seen = set()
    if _runs_a_script(item.function, item.module, seen):
        return True
    for defs in item._fixtureinfo.name2fixturedefs.values():
        for fd in defs:
            mod = sys.modules.get(getattr(fd.func, "__module__", ""), item.module)
            if _runs_a_script(fd.func, mod, seen):
                return True
    return False


def pytest_collection_modifyitems(config, items):
    for item in items:
        if isinstance(item, pytest.Function) and _is_slow(item):
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A real_assets test that could not fetch its files fails with the one
    line naming what (utils/assets.py's UserError), not pip's traceback."""
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and call.excinfo is not None and item.get_closest_marker("real_assets"):
        from utils.errors import UserError
        if call.excinfo.errisinstance(UserError):
            rep.longrepr = f"real_assets: could not fetch the real assets: {call.excinfo.value}"


# --------------------------------------------------------------------------- shared fixtures
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


@pytest.fixture(autouse=True)
def _bert_suite_log_reaches_caplog():
    """A stage run in this process sets the ``bert_suite`` logger not to
    propagate (its own stdout handler); caplog listens at the root, so let
    records through for the test, whatever ran before it."""
    import logging
    logger = logging.getLogger("bert_suite")
    before = logger.propagate
    logger.propagate = True
    yield
    logger.propagate = before
