"""The INT8 CPU predictor computes what the quantized program states
(utils/onednn_int8.py): paddle 2.6's passes hand the fc kernels weights
dequantized along the wrong axis (square weights) and scaled by the wrong
stride (every weight); the suite's predictor corrects them."""
import numpy as np
import pytest

from helpers import paddle3, run_script

int8_line = pytest.mark.skipif(paddle3(), reason="INT8 runs on the paddle 2.6.2 line only")


def test_stated_weights_apply_each_scale_along_the_quant_axis():
    import paddle
    from utils import onednn_int8
    paddle.enable_static()
    try:
        main, scope = paddle.static.Program(), paddle.static.Scope()
        q = np.arange(-6, 6, dtype=np.float32).reshape(3, 4)          # a square-free [in=3, out=4] weight
        scale = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
        with paddle.static.program_guard(main), paddle.static.scope_guard(scope):
            block = main.global_block()
            w = block.create_parameter(name="w", shape=[3, 4], dtype="float32")
            s = block.create_parameter(name="w@scale", shape=[4], dtype="float32")
            zp = block.create_parameter(name="w@zp", shape=[4], dtype="float32")
            out = block.create_var(name="w.dequantized", shape=[3, 4], dtype="float32")
            block.append_op(type="dequantize_linear", inputs={"X": [w], "Scale": [s], "ZeroPoint": [zp]},
                            outputs={"Y": [out]}, attrs={"quant_axis": 1, "bit_length": 8})
            for name, value in (("w", q), ("w@scale", scale), ("w@zp", np.zeros(4, np.float32))):
                scope.var(name).get_tensor().set(value, paddle.CPUPlace())
            stated = onednn_int8.stated_weights(main, scope)
    finally:
        paddle.disable_static()
    assert list(stated) == ["w"]
    np.testing.assert_allclose(stated["w"], q * scale[None, :] / 127.0, rtol=1e-6)


@pytest.fixture(scope="module")
def quantized(sst2_teacher, glue_data, tmp_path_factory):
    """A tiny SST-2 model and its INT8 model with the attention scores kept FP32: oneDNN's passes run that
    product in FP32 anyway, so the program and the predictor then state the same arithmetic."""
    root = tmp_path_factory.mktemp("onednn")
    fp32, int8 = str(root / "fp32" / "model"), str(root / "int8" / "model")
    run_script("export_model.py", "--model_name_or_path", sst2_teacher, "--sub_model_output_dir", str(root / "dyn"),
               "--static_sub_model", fp32, "--data_dir", glue_data, "--max_seq_length", "32")
    run_script("quantize.py", "--model_prefix", fp32, "--output_prefix", int8, "--data_dir", glue_data,
               "--batch_num", "4", "--batch_size", "16", "--skip_layers", "L0.scores,L1.scores", "--force")
    return fp32, int8


def _inputs(seed=0, n=32, t=24):
    rng = np.random.RandomState(seed)
    ids = rng.randint(5, 60, size=(n, t)).astype("int64")
    ids[:, 0], ids[:, -1] = 2, 3
    return ids, np.zeros_like(ids)


@int8_line
def test_the_int8_predictor_computes_what_the_program_states(quantized, monkeypatch):
    import paddle
    from utils import inference
    from utils.quant_ptq import static_program
    _, int8 = quantized
    ids, seg = _inputs()
    with static_program(int8) as (program, scope):      # the QDQ program run by the static Executor: exact
        exe = paddle.static.Executor(paddle.CPUPlace())
        with paddle.static.scope_guard(scope):
            fetch = [v for v in program.global_block().ops if v.type == "fetch"]
            exact = exe.run(program, feed={"input_ids": ids, "token_type_ids": seg},
                            fetch_list=[program.global_block().var(fetch[0].input("X")[0])])[0]
    fixed = inference.run_predictor(inference.create_predictor(int8), ids, seg)
    stock = inference.run_predictor(inference.create_predictor(int8, int8_stock=True), ids, seg)

    def rel(a):
        return float(np.linalg.norm(a - exact) / np.linalg.norm(exact))
    # measured: 8.5e-08 (float rounding) against 0.070 with the weights paddle's passes leave
    assert rel(fixed) < 1e-4, (rel(fixed), rel(stock))
    assert rel(stock) > 0.01, (rel(fixed), rel(stock))
    monkeypatch.setenv("BERT_SUITE_INT8_STOCK", "1")     # the switch every script's predictors follow
    np.testing.assert_array_equal(inference.run_predictor(inference.create_predictor(int8), ids, seg), stock)


@int8_line
def test_the_corrected_program_keeps_the_fc_ops_int8(quantized, tmp_path):
    from utils import onednn_int8
    from utils.quant_ptq import static_program
    _, int8 = quantized
    prefix, patched = onednn_int8.corrected_program(int8, str(tmp_path))
    with static_program(prefix) as (program, scope):
        fcs = [op for op in program.global_block().ops if op.type == "fc"]
        quantized_fc = [op for op in fcs if op.has_attr("Scale_weights") and op.attr("mkldnn_data_type") == "int8"]
        # 2 layers x (q, k, v, out, ffn1, ffn2); the pooler and classifier stay FP32
        assert patched == len(quantized_fc) == 12
        for op in quantized_fc:    # 127 / each output column's abs max: no weight saturates
            w = np.asarray(scope.find_var(op.input("W")[0]).get_tensor())
            scales = np.asarray(op.attr("Scale_weights"))
            assert np.abs(w * scales[None, :]).max() <= 127.0 + 1e-3
            np.testing.assert_allclose(np.abs(w * scales[None, :]).max(axis=0), 127.0, rtol=1e-5)
