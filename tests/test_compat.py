"""The fixes of utils/compat.py, one test each that fails when its fix is
removed (the numbers are compat's): the import-time fixes (0, 4-6: no paddle
on ``import utils``, the OMP banner dropped, stride kernels off), the
PaddleSlim supernet layers (2, 3), the post-training quantizer (7-9) and
paddle2onnx's installing optimiser (10: tests/test_quantize_onnx.py, beside
the other export_onnx tests)."""
import os

import numpy as np
import pytest


def _python(code, **env):
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.run([sys.executable, "-c", code], cwd=root, env=dict(os.environ, **env), capture_output=True,
                          text=True)


@pytest.mark.parametrize("world, want", [(None, max(1, os.cpu_count() or 1)),
                                         ("2", max(1, (os.cpu_count() or 1) // 2))])
def test_omp_threads_default_to_the_cores_of_this_process(world, want):
    """Fix 4: paddle 2.6 sets OMP_NUM_THREADS=1 at import when it is unset;
    utils sets the machine's cores shared among the launch's processes."""
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "PADDLE_TRAINERS_NUM")}
    if world:
        env["PADDLE_TRAINERS_NUM"] = world
    r = subprocess.run([sys.executable, "-c", "import os, utils; print(os.environ['OMP_NUM_THREADS'])"],
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == str(want), r.stderr


@pytest.mark.parametrize("env, want", [(None, "False"), ("1", "True")])
def test_stride_kernels_are_off_unless_the_user_turns_them_on(env, want):
    """utils.compat turns paddle 2.6's strided views off (a CPU transpose by
    the strided-copy kernel is ~5x slower than by the transpose kernel);
    FLAGS_use_stride_kernel in the environment wins.  Off, a transpose is a
    real copy: writing into it leaves the source alone."""
    code = ("import utils, paddle; f = paddle.get_flags(['FLAGS_use_stride_kernel'])['FLAGS_use_stride_kernel']; "
            "x = paddle.arange(6, dtype='float32').reshape([2, 3]); t = paddle.transpose(x, [1, 0]); "
            "print(f, t.is_contiguous(), float(t.sum()))")
    import subprocess
    import sys
    env_vars = {k: v for k, v in os.environ.items() if k != "FLAGS_use_stride_kernel"}
    if env is not None:
        env_vars["FLAGS_use_stride_kernel"] = env
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-c", code], cwd=root, env=env_vars, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    flag, contiguous, total = r.stdout.split()
    assert flag == want and total == "15.0"
    assert contiguous == ("True" if want == "False" else "False")


def test_utils_and_the_paddle_free_modules_do_not_import_paddle():
    """``import utils`` only arms utils.compat (environment, warning filters,
    import hook): paddle's start-up is paid by the modules that need it."""
    r = _python("import sys, utils, utils.errors, utils.tasks, utils.metrics, utils.publish, utils.report, "
                "utils.analysis, utils.train_args, utils.runs, utils.output_dir; "
                "print(sorted(m for m in sys.modules if m.split('.')[0] in ('paddle', 'paddlenlp', 'paddleslim')))")
    assert r.returncode == 0 and r.stdout.strip() == "[]", (r.stdout, r.stderr)


@pytest.mark.parametrize("script", ["report.py", "analyze.py"])
def test_help_of_the_paddle_free_scripts_imports_no_paddle(script):
    r = _python(f"import runpy, sys; sys.argv = ['{script}', '--help']\n"
                f"try:\n    runpy.run_path('{script}', run_name='__main__')\nexcept SystemExit:\n    pass\n"
                f"print('paddle' in sys.modules, file=sys.stderr)")
    assert r.returncode == 0 and "usage" in r.stdout and r.stderr.strip().endswith("False"), r.stderr


@pytest.mark.parametrize("first", ["paddle", "paddlenlp"])
def test_the_omp_banner_is_dropped_whoever_imports_paddle_first(first):
    """utils.compat fix 0: paddle 2.6 prints a two-line OMP_NUM_THREADS
    banner at import when the variable is > 1 (as fix 4 sets it); the import
    hook drops it however paddle gets imported, and stderr stays empty."""
    r = _python(f"import utils, {first}, paddle; print(paddle.get_flags(['FLAGS_use_stride_kernel']))",
                OMP_NUM_THREADS="2")
    assert r.returncode == 0 and "OMP_NUM_THREADS" not in r.stderr, r.stderr
    assert "False" in r.stdout
    from helpers import paddle3
    if not paddle3():      # the banner is paddle 2.6's: without utils it is there
        assert "OMP_NUM_THREADS set to 2" in _python("import paddle", OMP_NUM_THREADS="2").stderr


def test_paddleslim_super_layers_run_once_patched():
    """Fix 2: paddleslim 2.6.0's SuperLayerNorm.forward unpacks three outputs
    of a layer_norm that returns fewer since paddle 2.6; fix 3 (paddle 3):
    SuperEmbedding / SuperLayerNorm pass arguments positionally into changed
    signatures.  In a fresh process: stock fails, patched runs."""
    r = _python("import utils, paddle\n"
                "from paddleslim.nas.ofa import layers as L\n"
                "x = paddle.rand([2, 8])\n"
                "try:\n    L.SuperLayerNorm(8)(x); print('stock runs')\n"
                "except (ValueError, TypeError) as e:\n    print('stock fails:', type(e).__name__)\n"
                "from utils.compat import patch_paddleslim\n"
                "patch_paddleslim()\n"
                "print(L.SuperLayerNorm(8)(x).shape, L.SuperEmbedding(10, 8)(paddle.to_tensor([[1, 2]])).shape)")
    assert r.returncode == 0, r.stderr[-3000:]
    stock, patched = r.stdout.splitlines()
    assert stock.startswith("stock fails") and patched == "[2, 8] [1, 2, 8]", r.stdout


# --------------------------------------------------------------------------- utils/compat.py fixes 7-9
def _observe_ptq_fixes():
    """What paddle 2.6's quantizer does, right now, with a 0-d activation
    (fix 7), a histogram of values far from 0 (fix 8) and its observer ops
    (fix 9)."""
    import types
    from paddle.static.quantization import post_training_quantization as ptq
    from paddle.static.quantization.quant_config import BaseQuantizer
    import paddle
    seen = {}
    scope = paddle.static.Scope()
    scope.var("pad_id").get_tensor().set(np.array(0.5, "float32"), paddle.CPUPlace())   # the mask's 0-d pad id
    avg = types.SimpleNamespace(_quantized_threshold={"w": 1.0}, _quantized_act_var_name=["pad_id"], _scope=scope,
                                _zero_size_var_names=set(), _quantized_var_avg={})
    try:
        ptq.PostTrainingQuantization._sample_avg(avg)
        seen["avg"] = avg._quantized_var_avg
    except IndexError as e:
        seen["avg"] = f"IndexError: {e}"
    hist = types.SimpleNamespace(_quantized_act_var_name=["pooled"], _zero_size_var_names=set(),
                                 _sampling_act_abs_min_max={"pooled": [0.8, 0.9]}, _sampling_act_histogram={},
                                 _histogram_bins=10)
    ptq.PostTrainingQuantization._init_sampling_act_histogram(hist)
    seen["hist_from"] = float(hist._sampling_act_histogram["pooled"][1][0])
    seen["observers"] = len(BaseQuantizer(["matmul"]).observer_operation_types)
    return seen


def test_ptq_fixes_are_in_force_during_run_ptq_and_only_there(tmp_path, monkeypatch):
    """run_ptq quantizes with fixes 7-9 of utils/compat.py; without them the
    stock quantizer crashes on --algo avg, starts the histogram at min |x|
    and observes ops other than the matmuls (removing a fix fails this)."""
    from helpers import paddle3
    if paddle3():
        pytest.skip("INT8 runs on the paddle 2.6 line")
    import paddleslim.quant
    from utils import quant_ptq
    (tmp_path / "model.pdmodel").write_bytes(b"")
    calls = []
    monkeypatch.setattr(paddleslim.quant, "quant_post_static", lambda **kw: calls.append(_observe_ptq_fixes()))
    dropped = []   # the clean-up of the written program (nothing is written here)
    monkeypatch.setattr(quant_ptq, "drop_fp32_output_qdq", dropped.append)
    stock = _observe_ptq_fixes()
    assert stock["avg"].startswith("IndexError") and stock["hist_from"] == pytest.approx(0.8) and stock["observers"]
    batches = [[np.zeros((2, 4), "int64")]]
    for algo in ("avg", "hist"):
        quant_ptq.run_ptq(str(tmp_path / "model"), {"algo": algo, "weight_quantize_type": "abs_max"}, batches,
                          ["input_ids"], str(tmp_path / "out"))
    avg, hist = calls
    assert dropped == [str(tmp_path / "out" / "model")] * 2
    assert avg["avg"] == {"pad_id": [0.5]} and avg["observers"] == 0
    assert hist["hist_from"] == 0.0 and hist["observers"] == 0
    assert _observe_ptq_fixes() == stock            # scoped: the stock quantizer is back afterwards


AMD = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse sse2 avx fma avx2\n\nprocessor\t: 1\n"
INTEL = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu sse sse2 avx fma avx2 avx512f\n"


@pytest.mark.parametrize("cpuinfo, want", [(AMD, "5"), (AMD.replace(" avx2", ""), None), (INTEL, None), ("", None)])
def test_mkl_takes_its_avx2_path_on_amd_cpus_only(cpuinfo, want):
    """Fix 11: MKL_DEBUG_CPU_TYPE=5 for an AMD CPU with AVX2 and FMA (MKLML's
    vendor dispatch gives it a path without either: GEMMs 1.7-1.9x slower,
    benchmarks/mkl_dispatch.py); an Intel CPU keeps MKL's own choice."""
    from utils.compat import mkl_cpu_type
    assert mkl_cpu_type(cpuinfo) == want


@pytest.mark.parametrize("user", [None, "", "4"])
def test_mkl_cpu_type_is_set_at_import_for_this_cpu_unless_the_user_set_it(user):
    from utils.compat import mkl_cpu_type
    env = {k: v for k, v in os.environ.items() if k != "MKL_DEBUG_CPU_TYPE"}
    if user is not None:
        env["MKL_DEBUG_CPU_TYPE"] = user
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-c", "import os, utils; print(repr(os.environ.get('MKL_DEBUG_CPU_TYPE')))"],
                       cwd=root, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
        this_cpu = mkl_cpu_type(f.read())
    assert r.stdout.strip() == repr(user if user is not None else this_cpu)
