"""INT8 vs FP32 latency of a BERT classifier on CPU (Paddle Inference), at
full width and at a width cut from it exactly as export_model.py cuts one.

    python benchmarks/int8_speed.py --shape minilm --workdir out/int8_minilm
    python benchmarks/int8_speed.py --shape bert-base --width 1/2 --workdir out/int8_bert_base

Builds ``BertForSequenceClassification`` with random weights (``--shape``
minilm: hidden 384, 6 layers, 12 heads, FFN 1536; bert-base: hidden 768,
12 layers, 12 heads, FFN 3072; vocabulary 30522 -- no download), cuts the
``--width`` sub-network (``utils.extract.extract_subnet``), saves both as
static models, quantizes each with quantize.py's own ``quantize()`` on
random token ids (``--calib_batches`` batches of ``--batch_size`` x
``--seq_len``), then times, interleaved over ``--rounds`` rounds (the
median is reported):

* FP32 without oneDNN (unless ``--skip_no_onednn``), FP32 with oneDNN,
* INT8 with oneDNN + ``enable_mkldnn_int8()`` (every op type, as
  ``utils.inference.create_predictor(int8=True)`` does),
* INT8 with ``enable_mkldnn_int8({"fc", "matmul", "matmul_v2"})``,
* the same FP32 oneDNN and INT8 predictors of the width sub-network,
* with ``--compare_observers``: the full model quantized with
  ``--with_observers`` (stock PaddleSlim), ``enable_mkldnn_int8()``.

Speed-ups are against FP32 oneDNN at full width (the teacher as deployed).
Also: file sizes, max |INT8 - FP32| of the logits, and whether two runs of
the INT8 predictor on the same input agree exactly.  Random weights say
nothing about accuracy; the figures are about speed and size.  One JSON line
on stdout.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import utils  # noqa: E402,F401  (first: stack fixes before paddle is imported)

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

SHAPES = {"minilm": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536),
          "bert-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default=None, help="default: out/int8_SHAPE")
    p.add_argument("--shape", default="minilm", choices=sorted(SHAPES))
    p.add_argument("--width", default="1/2", help="the sub-network's width (a fraction or decimal)")
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--seq_len", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--calib_batches", type=int, default=4)
    p.add_argument("--algo", default="hist")
    p.add_argument("--compare_observers", action="store_true",
                   help="also quantize with quantize.py --with_observers (stock PaddleSlim: elementwise_add, "
                        "reshape2, transpose2, ... observed too) and time that model in the same rounds")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--runs", type=int, default=2, help="timed runs per predictor and round")
    p.add_argument("--skip_no_onednn", action="store_true", help="skip the slow FP32 run without oneDNN")
    return p.parse_args(argv)


def make_predictor(prefix, threads, mkldnn=True, int8_ops=None):
    import paddle.inference as pi
    from utils import inference
    config = pi.Config(inference.model_file(prefix), prefix + ".pdiparams")
    config.disable_glog_info()
    config.disable_gpu()
    config.set_cpu_math_library_num_threads(threads)
    if mkldnn:
        config.enable_mkldnn()
        if int8_ops == "all":
            config.enable_mkldnn_int8()
        elif int8_ops:
            config.enable_mkldnn_int8(set(int8_ops))
    else:
        config.disable_mkldnn()
    config.enable_memory_optim()
    return pi.create_predictor(config)


def random_batch(rng, batch_size, seq_len):
    ids = rng.randint(1000, 30000, (batch_size, seq_len)).astype("int64")
    ids[:, 0] = 2  # [CLS]-like first token
    ids[:, -rng.randint(1, seq_len // 4):] = 0  # some padding, so the attention mask matters
    return ids, np.zeros_like(ids)


def build_models(cfg, width, fp32, fp32_w):
    """The random-weight model and its width sub-network as static models (once)."""
    import paddle
    from paddlenlp.transformers import BertConfig, BertForSequenceClassification
    from utils import inference
    from utils.extract import extract_subnet
    if inference.model_file(fp32) is not None and inference.model_file(fp32_w) is not None:
        return
    paddle.seed(0)
    config = BertConfig(**cfg)
    model = BertForSequenceClassification(config)
    model.eval()
    inference.save_static(model, fp32)
    sub = extract_subnet(model, width, config, "classification")
    sub.eval()
    inference.save_static(sub, fp32_w)


def quantize_all(jobs, calib, algo, batch_size, compare_observers):
    """quantize.py's quantize() of each (source, target, with observers?) not done yet; seconds per target."""
    from utils import inference, quant_ptq
    calib_seconds = {}
    for src, prefix, observers in jobs:
        if inference.model_file(prefix) is None and (not observers or compare_observers):
            recipe = {"algo": algo, "batch_num": len(calib), "weight_quantize_type": "channel_wise_abs_max",
                      "hist_percent": 0.9999}
            t = time.time()
            quant_ptq.run_ptq(src, recipe, calib, ["input_ids", "token_type_ids"], os.path.dirname(prefix),
                              quant_ptq.head_skip(quant_ptq.quant_sites(src)), with_observers=observers)
            calib_seconds[os.path.basename(os.path.dirname(prefix))] = time.time() - t
    return calib_seconds


def time_predictors(preds, ids, seg, rounds, runs):
    """(first outputs, {name: ms per run of each round}), interleaved rounds."""
    from utils import inference
    outs = {k: inference.run_predictor(p, ids, seg) for k, p in preds.items()}  # warm-up (oneDNN primitives)
    times = {k: [] for k in preds}
    for _ in range(rounds):
        for k, p in preds.items():
            t = time.perf_counter()
            for _ in range(runs):
                inference.run_predictor(p, ids, seg)
            times[k].append((time.perf_counter() - t) / runs * 1000)
    return outs, times


def main(argv=None):
    args = parse_args(argv)
    from utils import inference, quant_ptq
    from utils.widths import snap_widths

    workdir = args.workdir or os.path.join("out", f"int8_{args.shape.replace('-', '_')}")
    cfg = dict(SHAPES[args.shape], vocab_size=30522, max_position_embeddings=512, num_labels=2)
    width = snap_widths([args.width], cfg["num_attention_heads"], cfg["intermediate_size"],
                                flag="--width")[0]
    wtag = f"w{width.tag()}"
    fp32, fp32_w = os.path.join(workdir, "fp32", "model"), os.path.join(workdir, f"fp32_{wtag}", "model")
    int8 = os.path.join(workdir, f"int8_{args.algo}", "model")
    int8_w = os.path.join(workdir, f"int8_{args.algo}_{wtag}", "model")
    int8_obs = os.path.join(workdir, f"int8_{args.algo}_obs", "model")
    rng = np.random.RandomState(0)
    build_models(cfg, width, fp32, fp32_w)
    calib = [random_batch(rng, args.batch_size, args.seq_len) for _ in range(args.calib_batches)]
    calib_seconds = quantize_all(((fp32, int8, False), (fp32_w, int8_w, False), (fp32, int8_obs, True)), calib,
                                 args.algo, args.batch_size, args.compare_observers)
    ids, seg = random_batch(rng, args.batch_size, args.seq_len)
    setups = {"fp32_onednn": (fp32, True, None), "int8_all_ops": (int8, True, "all"),
              "int8_fc_matmul": (int8, True, ["fc", "matmul", "matmul_v2"]),
              f"fp32_onednn_{wtag}": (fp32_w, True, None), f"int8_all_ops_{wtag}": (int8_w, True, "all")}
    if args.compare_observers:
        setups["int8_observers_all_ops"] = (int8_obs, True, "all")
    if not args.skip_no_onednn:
        setups = {"fp32_no_onednn": (fp32, False, None), **setups}
    preds = {k: make_predictor(p, args.threads, mk, ops) for k, (p, mk, ops) in setups.items()}
    outs, times = time_predictors(preds, ids, seg, args.rounds, args.runs)
    ms = {k: float(np.median(v)) for k, v in times.items()}
    ref = outs["fp32_onednn"]
    result = {
        "model": args.shape, "width": width.ratio, "heads": width.heads, "ffn": width.ffn,
        "shape": [args.batch_size, args.seq_len], "threads": args.threads, "algo": args.algo,
        "calibration_seconds": calib_seconds,
        "median_ms": ms, "all_ms": times,
        "speedup_vs_fp32_onednn": {k: ms["fp32_onednn"] / v for k, v in ms.items()},
        "max_abs_diff_vs_fp32": {k: float(np.abs(o - (outs[f"fp32_onednn_{wtag}"] if wtag in k else ref)).max())
                                 for k, o in outs.items()},
        "fp32_logit_abs_max": float(np.abs(ref).max()),
        "int8_rerun_identical": {k: bool(np.array_equal(outs[k], inference.run_predictor(preds[k], ids, seg)))
                                 for k in preds if k.startswith("int8")},
        "bytes": {"fp32": quant_ptq.model_bytes(fp32), "int8": quant_ptq.model_bytes(int8),
                  f"fp32_{wtag}": quant_ptq.model_bytes(fp32_w), f"int8_{wtag}": quant_ptq.model_bytes(int8_w),
                  "fp32_pdiparams": os.path.getsize(fp32 + ".pdiparams"),
                  "int8_pdiparams": os.path.getsize(int8 + ".pdiparams")},
        "int8_params_by_dtype": quant_ptq.inspect_program(int8)["param_bytes_by_dtype"],
        "load_average": os.getloadavg()[0],
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
