"""Paddle static inference models: writing them and running them with
Paddle Inference (shared by export, predict and benchmark)."""
import json
import logging
import os

import numpy as np

from .errors import UserError

INFO_SUFFIX = ".info.json"        # beside the static model: task type, labels, tokenizer dir
TOKENIZER_SUFFIX = "_tokenizer"   # directory with the tokenizer files
logger = logging.getLogger("bert_suite")


MODEL_EXTS = (".pdmodel", ".json")  # paddle 2.6 writes PREFIX.pdmodel, 3.x PREFIX.json (a PIR program)
EXPECTED = "PREFIX.pdmodel (paddle 2) or PREFIX.json (paddle 3), and PREFIX.pdiparams"


def model_file(prefix):
    """The program file of a static model (either line's format), or None."""
    for ext in MODEL_EXTS:
        if os.path.isfile(prefix + ext):
            return prefix + ext
    return None


def is_pir(path):
    """Whether a program file (or a model prefix) is paddle 3's PIR format."""
    path = path if path.endswith(MODEL_EXTS) else (model_file(path) or "")
    return path.endswith(".json")


def check_readable(mfile):
    """A UserError if ``mfile`` is a paddle 3 (PIR) program and this paddle is 2.x,
    which cannot read it (Paddle Inference 2.6 fails with an unrelated parse error)."""
    from .compat import paddle_major
    if is_pir(mfile) and paddle_major() < 3:
        raise UserError(f"{mfile} is a paddle 3 (PIR) program; this paddle 2.x cannot run it: use the paddle 3 "
                        f"line (make PADDLE=3) or export the model again with paddle 2.6")


def require_static(prefix, flag="--model_prefix"):
    """The program file of the static model at ``prefix``; a UserError naming
    ``flag`` if the program or its parameters are missing."""
    mfile = model_file(prefix)
    if mfile is None or not os.path.isfile(prefix + ".pdiparams"):
        where = f"{flag} {prefix}" if flag else prefix
        raise UserError(f"{where}: no static model here (expected {EXPECTED.replace('PREFIX', prefix)}, "
                        f"written by export_model.py)")
    return mfile


def save_static(model, prefix):
    """``paddle.jit.save`` with input specs [None, None] int64 for input_ids
    and token_type_ids: any batch size and sequence length run."""
    import paddle
    from paddle.static import InputSpec
    model.eval()
    spec = [InputSpec([None, None], "int64", name="input_ids"),
            InputSpec([None, None], "int64", name="token_type_ids")]
    static = paddle.jit.to_static(model, input_spec=spec, full_graph=True)
    paddle.jit.save(static, prefix)
    return model_file(prefix)


def is_int8(prefix):
    """Whether PREFIX.info.json says the model was quantized by quantize.py."""
    path = prefix + INFO_SUFFIX
    if not os.path.isfile(path):
        return False
    with open(path, encoding="utf-8") as f:
        return bool(json.load(f).get("int8"))


def create_predictor(prefix, device="cpu", threads=2, mkldnn=True, memory_optim=True, trt_fp16=False,
                     int8=None, int8_stock=False):
    """A Paddle Inference predictor.  ``memory_optim`` (peak memory of
    bert-base at batch 16: 2.54 -> 1.13 GB on paddle 2.6) is skipped for PIR
    programs, where Paddle Inference 3.3 cannot run that pass.  ``int8=None`` (default) follows the
    model's info file: an INT8 model from quantize.py gets oneDNN's INT8
    kernels, without which Paddle Inference runs its quantize/dequantize ops
    in FP32 (correct outputs, no speed-up), with its fc weights as the
    program states them (:mod:`utils.onednn_int8`; ``int8_stock=True`` or
    the environment variable ``BERT_SUITE_INT8_STOCK=1``: as paddle's passes
    leave them)."""
    import paddle.inference as pi
    if int8 is None:
        int8 = is_int8(prefix)
        if int8 and (device != "cpu" or not mkldnn):
            logger.warning("%s is an INT8 model: without oneDNN on the CPU it runs dequantized in FP32", prefix)
    mfile = require_static(prefix, flag=None)
    check_readable(mfile)
    int8_stock = int8_stock or os.environ.get("BERT_SUITE_INT8_STOCK") == "1"   # for comparisons
    from .compat import paddle_major
    if int8 and device == "cpu" and mkldnn and not int8_stock and not is_pir(mfile) and paddle_major() < 3:
        # the stock passes hand the fc kernels wrong weights (utils/onednn_int8.py); int8_stock=True keeps them.
        # INT8 is made and run on the 2.6 line; the passes of 3.x are not checked here
        from . import onednn_int8
        return onednn_int8.create(prefix, threads=threads, memory_optim=memory_optim)
    config = pi.Config(mfile, prefix + ".pdiparams")
    config.disable_glog_info()
    if device == "gpu":
        import paddle
        if not paddle.is_compiled_with_cuda():
            raise UserError("--device gpu: this paddle build has no CUDA support")
        config.enable_use_gpu(256, 0)
        if trt_fp16:
            config.enable_tensorrt_engine(workspace_size=1 << 30, max_batch_size=64, min_subgraph_size=5,
                                          precision_mode=pi.PrecisionType.Half, use_static=False,
                                          use_calib_mode=False)
    else:
        config.disable_gpu()
        config.set_cpu_math_library_num_threads(threads)
        if mkldnn:
            config.enable_mkldnn()
            if int8:
                config.enable_mkldnn_int8()
        else:
            config.disable_mkldnn()
    if memory_optim and not is_pir(mfile):
        # Paddle 3 (PIR programs): create_predictor raises "Not find predictor_id N and pass_name
        # memory_optimize_pass" with it, oneDNN on or off; without it the outputs match the dynamic model.
        config.enable_memory_optim()
    return pi.create_predictor(config)


def run_predictor(predictor, input_ids, token_type_ids):
    """Run once; returns the first output as numpy."""
    for name, arr in zip(predictor.get_input_names(), (input_ids, token_type_ids)):
        h = predictor.get_input_handle(name)
        h.reshape(list(arr.shape))
        h.copy_from_cpu(np.ascontiguousarray(arr, dtype="int64"))
    predictor.run()
    return predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()


def write_info(prefix, info):
    from .publish import write_json_atomic
    write_json_atomic(prefix + INFO_SUFFIX, info)


def read_info(prefix):
    path = prefix + INFO_SUFFIX
    if not os.path.isfile(path):
        raise UserError(f"{path} is missing: export the static model with export_model.py")
    with open(path, encoding="utf-8") as f:
        return json.load(f)
