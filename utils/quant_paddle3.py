"""INT8 on the paddle 3 line: what was tried, and the guard quantize.py calls.

quantize.py's path (PaddleSlim's ``quant_post_static`` on the loaded static
program, then Paddle Inference with ``enable_mkldnn_int8``) needs paddle 2.6:
paddle 3 loads static models as PIR programs, and PaddleSlim 2.6.0 asserts an
old ``Program``.  Both paddle 3 routes were tried on paddle 3.3.1 (CPU) with a
4-layer BERT (hidden 256) and none reaches an INT8 model that runs, let alone
faster (``python -m utils.quant_paddle3`` repeats the first one):

1. ``paddle.quantization.PTQ`` in dynamic graph (observers on every
   ``nn.Linear``, calibration, ``PTQ.convert``), then ``paddle.jit.save``:
   the converted ``LinearQuanter`` / ``LinearDequanter`` layers create a
   persistable value shaped like their input, which fails for the suite's
   dynamic [batch, length] inputs (``ValueError: Each value of attribute
   'shape' is expected to be no less than 0 ... shape = [-1, -1, 256]``).
   Calling the quantize/dequantize kernels without that value saves a program
   whose predictor fails to build (``Tensor holds no memory``), oneDNN INT8
   on or off.
2. Paddle Inference's own oneDNN INT8 passes (``cpu_quantize_pass``,
   ``quant_dequant_onednn_pass``, ``params_quantization_onednn_pass``) exist
   in paddle 3.3.1 only for the old graph IR (``paddle::framework::ir``);
   a PIR program gets oneDNN FP32 kernels (``onednn_op.fc``), so even a
   quantize/dequantize program that ran would run dequantized, in FP32.

So quantize.py refuses on paddle 3 in one line and names the line that has
INT8 (the README's "Paddle 3" section says the same).
"""
from .errors import UserError

INT8_LINE = ("INT8 needs the paddle 2.6.2 line: paddle 3 has no working post-training INT8 path for these "
             "models (PaddleSlim 2.6.0 cannot read PIR programs, paddle.quantization's export fails, Paddle "
             "Inference's oneDNN INT8 passes are not ported to PIR); quantize the model in a paddle 2.6.2 "
             "environment (make venv / pip install -r requirements.txt -c constraints.txt) and export it there")


def check_line(major=None):
    """UserError (one line, exit 2) on paddle >= 3; ``major`` defaults to the installed paddle's."""
    if major is None:
        from .compat import paddle_major
        major = paddle_major()
    if major >= 3:
        raise UserError(f"quantize.py: {INT8_LINE}")


def _try_dynamic_ptq(prefix="/tmp/quant_paddle3_probe/model"):
    """Route 1 above, on a random 4-layer BERT: prints where it fails."""
    import paddle
    from paddle.quantization import PTQ, QuantConfig
    from paddle.quantization.observers import AbsmaxObserver
    from paddlenlp.transformers import BertConfig, BertForSequenceClassification
    from .inference import save_static
    paddle.seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=100, hidden_size=256, num_hidden_layers=4,
                                                     num_attention_heads=4, intermediate_size=1024))
    model.eval()
    config = QuantConfig(activation=None, weight=None)
    config.add_type_config(paddle.nn.Linear, activation=AbsmaxObserver(quant_bits=8),
                           weight=AbsmaxObserver(quant_bits=8))
    ptq = PTQ(config)
    observed = ptq.quantize(model, inplace=True)
    ids = paddle.randint(5, 100, [8, 64])
    observed(ids, paddle.zeros_like(ids))
    converted = ptq.convert(observed, inplace=True)
    try:
        save_static(converted, prefix)
    except Exception as e:  # noqa: BLE001  (report whatever paddle raises)
        lines = [l.strip() for l in str(e).splitlines() if "Error" in l] or [str(e).strip()]
        print(f"paddle {paddle.__version__}: paddle.jit.save of the PTQ model failed: {lines[-1]}")
        return False
    print(f"paddle {paddle.__version__}: PTQ model saved at {prefix}")
    return True


if __name__ == "__main__":
    from . import compat  # noqa: F401  (stack fixes before paddle)
    _try_dynamic_ptq()
