"""Compatibility fixes for the pinned stacks (paddlepaddle 2.6.2 or 3.3.1,
paddlenlp 2.8.1, paddleslim 2.6.0, paddle2onnx 1.3.1 / 2.1.0), all in one
place.  Each names the upstream defect and the versions it applies to;
tests/test_compat.py holds a test per fix that fails without it.

Importing this module is cheap: it sets environment defaults and warning
filters and arms an import hook; it does NOT import paddle.  Whoever imports
paddle later (a stage, paddlenlp, paddleslim) gets fixes 0-1, 4-5 and 11
in force, because they must precede paddle's own import.

At import of this module (before paddle is imported by anyone):

0. paddle 2.6.x's ``paddle.base.__bootstrap__`` prints a two-line "WARNING:
   OMP_NUM_THREADS set to N, not 1" banner on stderr for any N > 1 (which
   fix 4 sets on purpose).  An import hook (:class:`_QuietPaddleImport`)
   runs paddle's first import with that banner filtered out, so a failing
   script prints exactly one ``error:`` line.
1. ``import zlib`` before ``import paddle`` (paddle 2.6.x wheels).  Paddle's
   wheel bundles its own zlib; if paddle loads first, paddlenlp / scipy /
   pyarrow later fail with ``zlib.error: Error -2 ... inconsistent stream
   state`` and ``import paddle, sklearn`` can segfault.
4. paddle 2.6 sets ``OMP_NUM_THREADS=1`` at import when it is unset, so CPU
   training would use one core: default to the machine's cores shared among
   the processes of a distributed launch (the user's setting wins).
5. ``FLAGS_use_stride_kernel`` defaults to 0 (paddle 2.6's strided views make
   CPU transposes 5 times slower; see below).
6. paddle >= 3.0 only: ``import paddle`` warns ``UserWarning: No ccache
   found`` (``paddle.utils.cpp_extension``; only relevant when compiling
   custom C++ ops, which the suite never does).  Filtered by message, and
   the libraries' DeprecationWarnings by module (never all of them).
11. MKL on AMD CPUs: the MKLML that paddle's x86 wheels bundle (2019)
   picks its GEMM code by CPU vendor, and on an AMD CPU it takes a generic
   path with neither AVX2 nor FMA.  Every dynamic-graph matmul goes through
   it (training, evaluation; the static predictors run oneDNN, which is not
   affected).  Measured on the 2-core AMD EPYC (AVX2) of this project's
   machines, paddle 2.6.2: a [1024, 512] x [512, 2048] GEMM 60.5 ms -> 33.3
   ms (35 -> 65 GFLOP/s), a training step of the 2-layer Chinese RoBERTa at
   batch 16 x 60 1,655 -> 1,145 ms.  ``MKL_DEBUG_CPU_TYPE=5`` (read by MKL
   up to 2020.0) makes it take its AVX2 path; set only on an AuthenticAMD
   CPU that has AVX2 and FMA, before paddle loads MKL, and only when unset
   (an Intel CPU keeps MKL's own choice, which may be AVX-512)
   (:func:`mkl_cpu_type`; ``benchmarks/mkl_dispatch.py`` measures it).

Applied by :func:`patch_paddleslim` (called by whoever builds a supernet):

2. ``paddleslim.nas.ofa.layers.SuperLayerNorm.forward`` (paddleslim 2.6.0)
   unpacks three outputs of ``paddle._C_ops.layer_norm``, which returns one
   tensor since paddle 2.6 -> ``ValueError: too many values to unpack``.
   Replaced by a forward on the public ``F.layer_norm``.
3. paddle >= 3.0 only: ``SuperEmbedding.__init__`` / ``SuperLayerNorm.__init__``
   pass arguments positionally into signatures that gained parameters.
   Re-implemented with keyword arguments (harmless on 2.6).

Entered by :func:`utils.quant_ptq.run_ptq` through :func:`ptq_fixes`, only
for the duration of one post-training quantization (paddle 2.6.x
``paddle.static.quantization``, which PaddleSlim 2.6.0's
``quant_post_static`` drives; the INT8 path needs the 2.6 line):

7. ``PostTrainingQuantization._sample_avg`` reshapes every observed
   activation to ``[shape[0], -1]``; the 0-d pad-id constant of BERT's
   attention mask (``fill_constant``) makes ``--algo avg`` raise IndexError.
   Observed tensors are handed over as at least 1-d (:func:`scalar_safe_avg`).
8. ``--algo hist`` / ``KL``: the histogram of |x| spans [min |x|, max |x|]
   but the threshold is computed as ``bin index x bin width`` as if it
   started at 0, so a tensor whose |x| never nears 0 (a saturated tanh
   pooler, the logits) gets a scale short by min |x| (tiny test model:
   pooler scale 0.32 for values near +-0.83, logits 0.43x too small).  The
   histograms start at 0 (:func:`histogram_from_zero`).
9. ``BaseQuantizer.observer_operation_types`` makes the quantizer also record
   scales after every "observer" op (elementwise_add, reshape2, transpose2,
   ...) and insert quantize/dequantize pairs there, so oneDNN runs them in
   int8 too.  Measured on BERT graphs (paddle 2.6.2, 2 threads): outputs
   differed from run to run on the same input (up to 0.3 in logits on the
   tiny model), accuracy dropped, it was slower than quantizing the matmuls
   alone, and calibration took twice as long.  The observer list is empty
   unless asked for (:func:`matmul_scales_only`).

Used by export_onnx.py through :func:`paddle2onnx_export_kwargs`:

10. paddle2onnx 2.x (the paddle 3 line; 2.1.0 pinned) defaults to
    ``optimize_tool="polygraphy"``, which pip-installs packages during the
    conversion (it upgraded numpy to 2.x and broke paddleslim here).  It is
    always run with ``optimize_tool="onnxoptimizer"``; paddle2onnx 1.3.1 has
    no such parameter and gets none
    (tests/test_quantize_onnx.py::test_paddle2onnx_2x_never_runs_its_installing_optimizer).

Designed out rather than patched:

* The attention monkey patch of ``paddleslim.nas.ofa.utils.nlp_utils`` (drops
  the 1/sqrt(head_dim) scaling, replaces ``paddle.nn.MultiHeadAttention.forward``
  for the whole process) and the one of ``paddlenlp.transformers.ofa_utils``
  (mutates ``num_heads`` and loses a head to float rounding at width 5/6) are
  never imported: the suite runs supernets through its own forward in
  ``utils/elastic_forward.py``, which derives the head count from tensor shapes and
  leaves paddle's classes untouched, so exported graphs use paddle's own
  attention.
"""
import zlib  # noqa: F401  (fix 1: must precede `import paddle`)
import contextlib
import importlib.abc
import importlib.util
import inspect
import logging
import os
import sys
import warnings


os.environ.setdefault("GLOG_minloglevel", "2")       # paddle C++ INFO spam
# 4. paddle 2.6 sets OMP_NUM_THREADS=1 at import when it is unset, so CPU
#    training would use one core.  Default to the cores of this machine shared
#    among the processes of a distributed launch (the user's setting wins).
os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1)
                                                 // int(os.environ.get("PADDLE_TRAINERS_NUM", "1") or 1))))
os.environ.setdefault("FLAGS_call_stack_level", "1")


def mkl_cpu_type(cpuinfo):
    """Fix 11: the ``MKL_DEBUG_CPU_TYPE`` this CPU needs, from the text of
    /proc/cpuinfo: "5" (MKL's AVX2 path) for an AMD CPU with AVX2 and FMA,
    else None (MKL's own dispatch is right)."""
    vendor, flags = None, set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "vendor_id" and vendor is None:
            vendor = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return "5" if vendor == "AuthenticAMD" and {"avx2", "fma"} <= flags else None


def _set_mkl_cpu_type():
    if "MKL_DEBUG_CPU_TYPE" in os.environ:     # the user's setting wins
        return
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            cpu_type = mkl_cpu_type(f.read())
    except OSError:                             # not Linux: nothing to read, nothing to fix
        return
    if cpu_type is not None:
        os.environ["MKL_DEBUG_CPU_TYPE"] = cpu_type


_set_mkl_cpu_type()    # fix 11: before paddle (and with it MKL) is loaded
# 5. paddle 2.6 turned on "stride kernels": transpose, reshape of a transposed
#    tensor and slicing return strided views, and whatever needs the data
#    contiguous (every matmul on a transposed tensor, the backward of every
#    reshape after a transpose) copies it with a generic strided-copy kernel.
#    On CPU that copy is 5 times slower than paddle's own transpose kernel
#    (25 ms against 4.7 ms for a [32, 128, 12, 32] attention tensor) and made
#    a third of a MiniLM forward at batch 32.  Off, paddle behaves as 2.5 did
#    (a transpose is a copy by the transpose kernel), which paddlenlp 2.8
#    supports; measured: MiniLM teacher forward 1.31 s -> 0.87 s, OFA step at
#    batch 32 about 25% faster.  The user's setting wins.
os.environ.setdefault("FLAGS_use_stride_kernel", "0")

# 6. Warnings of the stack's libraries, scoped to them (a DeprecationWarning
#    of the suite's own code, or of any other package, still shows).
_STACK = r"(paddle|paddlenlp|paddleslim|paddle2onnx|onnx|onnxruntime|datasets|pkg_resources|setuptools|" \
         r"_distutils_hack|google\.protobuf|aistudio_sdk|huggingface_hub|visualdl|jieba|astor)(\.|$)"
warnings.filterwarnings("ignore", category=DeprecationWarning, module=_STACK)
warnings.filterwarnings("ignore", category=PendingDeprecationWarning, module=_STACK)
warnings.filterwarnings("ignore", message=".*pkg_resources.*")
# setuptools' _distutils_hack warns on every run when paddlenlp imports distutils
warnings.filterwarnings("ignore", message="Setuptools is replacing distutils")
warnings.filterwarnings("ignore", message="No ccache found")   # fix 6 (paddle 3.x)


class _DropOmpBanner:
    """A stand-in for sys.stderr while paddle is imported (fix 0): drops
    paddle 2.6's two-line OMP_NUM_THREADS banner; every other line passes
    through."""

    PREFIXES = ("WARNING: OMP_NUM_THREADS set to", "PLEASE USE OMP_NUM_THREADS WISELY")

    def __init__(self, stream):
        self.stream = stream
        self.dropped = False

    def write(self, text):
        # print() writes the line and its "\n" separately: drop both
        dropped, self.dropped = self.dropped, text.startswith(self.PREFIXES)
        if self.dropped or (dropped and text == "\n"):
            return len(text)
        return self.stream.write(text)

    def __getattr__(self, name):
        return getattr(self.stream, name)


class _QuietLoader(importlib.abc.Loader):
    """paddle's own loader, run with the banner filtered out of stderr."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        real, sys.stderr = sys.stderr, _DropOmpBanner(sys.stderr)
        module.__spec__.loader = module.__loader__ = self.loader    # paddle looks stock afterwards
        try:
            self.loader.exec_module(module)
        finally:
            sys.stderr = real

    def __getattr__(self, name):
        return getattr(self.loader, name)


class _QuietPaddleImport(importlib.abc.MetaPathFinder):
    """Intercepts the first ``import paddle`` of the process (fix 0), then
    steps aside."""

    def find_spec(self, name, path=None, target=None):
        if name != "paddle":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("paddle")
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


if "paddle" not in sys.modules and not any(isinstance(f, _QuietPaddleImport) for f in sys.meta_path):
    sys.meta_path.insert(0, _QuietPaddleImport())

_PATCHED = False


def paddle_major():
    import paddle
    v = paddle.__version__
    if v.startswith("0.0"):  # develop builds
        return 3
    return int(v.split(".")[0])


def patch_paddleslim():
    """Apply fixes 2 and 3 to paddleslim's super layers (idempotent)."""
    global _PATCHED
    if _PATCHED:
        return
    import paddle.nn as nn
    import paddle.nn.functional as F
    from paddleslim.nas.ofa import layers as L

    def layer_norm_forward(self, input):
        dim = int(input.shape[-1])
        weight = self.weight if self.weight is None or self.weight.shape[0] <= dim else self.weight[:dim]
        bias = self.bias if self.bias is None or self.bias.shape[0] <= dim else self.bias[:dim]
        self.cur_config = {"prune_dim": dim}
        return F.layer_norm(input, normalized_shape=[dim], weight=weight, bias=bias, epsilon=self._epsilon)

    L.SuperLayerNorm.forward = layer_norm_forward

    if paddle_major() >= 3:
        def embedding_init(self, num_embeddings, embedding_dim, candidate_config={}, padding_idx=None,
                           sparse=False, weight_attr=None, name=None):
            nn.Embedding.__init__(self, num_embeddings, embedding_dim, padding_idx=padding_idx,
                                  sparse=sparse, weight_attr=weight_attr, name=name)
            self.candidate_config = candidate_config
            self.cur_config = None
            self.expand_ratio = candidate_config.get("expand_ratio")
            self.base_output_dim = self._embedding_dim
            if self.expand_ratio is not None:
                self.base_output_dim = int(self._embedding_dim / max(self.expand_ratio))

        def layer_norm_init(self, normalized_shape, epsilon=1e-05, weight_attr=None, bias_attr=None, name=None):
            nn.LayerNorm.__init__(self, normalized_shape, epsilon=epsilon, weight_attr=weight_attr,
                                  bias_attr=bias_attr, name=name)
            self.cur_config = None

        L.SuperEmbedding.__init__ = embedding_init
        L.SuperLayerNorm.__init__ = layer_norm_init
    _PATCHED = True


# --------------------------------------------------------------------------- post-training quantization (7-9)
@contextlib.contextmanager
def scalar_safe_avg():
    """Fix 7: observed tensors reach ``_sample_avg`` at least 1-d."""
    import numpy as np
    from paddle.static.quantization import post_training_quantization as ptq
    original = ptq.utils.load_variable_data
    ptq.utils.load_variable_data = lambda scope, name: np.atleast_1d(original(scope, name))
    try:
        yield
    finally:
        ptq.utils.load_variable_data = original


@contextlib.contextmanager
def histogram_from_zero():
    """Fix 8: the activation histograms of ``hist`` / ``KL`` start at 0."""
    from paddle.static.quantization.post_training_quantization import PostTrainingQuantization as PTQ
    original = PTQ.__dict__["_init_sampling_act_histogram"]

    def init_sampling_act_histogram(self):
        for bounds in self._sampling_act_abs_min_max.values():
            bounds[0] = 0.0
        return original(self)

    PTQ._init_sampling_act_histogram = init_sampling_act_histogram
    try:
        yield
    finally:
        PTQ._init_sampling_act_histogram = original


@contextlib.contextmanager
def matmul_scales_only():
    """Fix 9: no observer ops; only matmul/matmul_v2/mul get scales."""
    from paddle.static.quantization import quant_config
    cls = quant_config.BaseQuantizer
    original = cls.__dict__["observer_operation_types"]
    cls.observer_operation_types = property(lambda self: [])
    try:
        yield
    finally:
        cls.observer_operation_types = original


@contextlib.contextmanager
def ptq_fixes(algo, with_observers=False):
    """Fixes 7-9 for one post-training quantization with ``algo``
    (``with_observers``: leave fix 9 out, stock behaviour)."""
    with contextlib.ExitStack() as stack:
        if algo == "avg":
            stack.enter_context(scalar_safe_avg())
        if algo in ("hist", "KL"):
            stack.enter_context(histogram_from_zero())
        if not with_observers:
            stack.enter_context(matmul_scales_only())
        yield


# --------------------------------------------------------------------------- paddle2onnx (10)
def paddle2onnx_export_kwargs(export, **kwargs):
    """Fix 10: ``kwargs`` for ``paddle2onnx.export`` (``export``) with
    ``optimize_tool="onnxoptimizer"`` where it has that parameter, and only
    the parameters this version accepts."""
    params = inspect.signature(export).parameters
    if "optimize_tool" in params:
        kwargs["optimize_tool"] = "onnxoptimizer"
    return {k: v for k, v in kwargs.items() if k in params}


def quiet_libraries():
    """Silence the per-call debug/info chatter of paddleslim and paddlenlp
    (e.g. OFA's "hit cpu in ofa" lines) so that our own logs stay readable."""
    for name in ("paddleslim", "paddleslim.nas.ofa", "paddlenlp"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from paddlenlp.utils.log import logger as nlp_logger
        nlp_logger.set_level("ERROR")
    except Exception:  # pragma: no cover - logger API differs across versions
        pass


def stride_kernels(on=True):
    """A context manager: within, paddle's ``FLAGS_use_stride_kernel`` is ``on``
    (the setting is restored after).  Fix 5 turns stride kernels off for the
    whole process because paddle 2.6's CPU strided copy makes transposes 5
    times slower; ``utils.elastic_forward.stock_ops`` turns them back on to
    time and check the step upstream runs (paddle's defaults)."""
    import contextlib
    import paddle

    @contextlib.contextmanager
    def toggled():
        saved = paddle.get_flags(["FLAGS_use_stride_kernel"])["FLAGS_use_stride_kernel"]
        paddle.set_flags({"FLAGS_use_stride_kernel": bool(on)})
        try:
            yield
        finally:
            paddle.set_flags({"FLAGS_use_stride_kernel": saved})

    return toggled()
