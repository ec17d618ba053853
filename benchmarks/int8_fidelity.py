"""Where an INT8 model's error comes from: the quantized program's own
arithmetic, or the CPU kernels that run it.

    python benchmarks/int8_fidelity.py --fp32 out/demo/compress/candidates/w0.5000/static/model \
        --int8 out/int8_guard/int8/model --data_dir out/int8_guard/test [--examples 1024]

On the dev split of ``--data_dir`` (a classification task), three runs of
the same texts:

* FP32: the FP32 model's predictor (oneDNN);
* exact: the INT8 model's quantize/dequantize program run by paddle's static
  Executor without oneDNN -- the arithmetic the program states (fake
  quantization in FP32, every quantized op included);
* real: the INT8 predictor (oneDNN INT8 kernels, as quantize.py's guard and
  predict.py run it).

Prints, against FP32, the mean |change of the logit margin| and the
prediction agreement of exact and real, their per-text difference; the
relative drift of every LayerNorm output (the residual stream, layer by
layer); and for the Linear layers of the first encoder layer, the INT8
kernel against exact int8 arithmetic on the very input the kernel received
(its relative error and the output channels it scales wrongly).  Writes the
numbers to ``--output`` (JSON).  Paddle 2.6 (the INT8 line) only.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import utils  # noqa: E402,F401  (first: stack fixes before paddle is imported)

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

import numpy as np  # noqa: E402

from utils.errors import UserError, run_main  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fp32", required=True, help="the FP32 static model prefix")
    p.add_argument("--int8", required=True, help="its INT8 model (quantize.py)")
    p.add_argument("--data_dir", required=True, help="task data dir; its dev split is scored")
    p.add_argument("--examples", type=int, default=1024, help="the first N dev texts")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--output", default=None, help="JSON file for the numbers (default: none)")
    args = p.parse_args(argv)
    if args.examples < 1 or args.batch_size < 1:
        raise UserError("--examples and --batch_size must be positive")
    from utils import inference
    for flag in ("fp32", "int8"):
        prefix = getattr(args, flag)
        if inference.model_file(prefix) is None:
            raise UserError(f"--{flag} {prefix}: no static model here")
    if not inference.read_info(args.int8).get("int8"):
        raise UserError(f"--int8 {args.int8}: its info file does not mark it INT8 (quantize.py writes it)")
    if not os.path.isdir(args.data_dir):
        raise UserError(f"--data_dir {args.data_dir}: not a directory")
    return args


def load(prefix):
    import paddle
    exe = paddle.static.Executor(paddle.CPUPlace())
    scope = paddle.static.Scope()
    with paddle.static.scope_guard(scope):
        program, feeds, fetch = paddle.static.load_inference_model(prefix, exe)
    return exe, scope, program, feeds, fetch


def linear_sites(program, sites):
    """For three Linear sites of encoder layer 0: (name, weight, bias, input var, output var after the bias)."""
    block = program.global_block()
    out = []
    for s in sites:
        # q, k and out: their outputs stay FP32 in oneDNN's graph, so fetching them changes no fusion (v's
        # output is requantized to int8, ffn1's is fused with GELU, ffn2's input is that fused output)
        if s["name"] not in ("L0.q", "L0.k", "L0.out"):
            continue
        mm = next(op for op in block.ops if op.type in ("matmul", "matmul_v2", "mul") and s["key"] in op.input_arg_names)
        add = next((op for op in block.ops if op.type == "elementwise_add" and mm.output_arg_names[0] in op.input("X")),
                   None)
        if add is None:
            continue
        out.append((s["name"], s["key"], add.input("Y")[0], s["acts"][0], add.output("Out")[0]))
    return out


def act_threshold(int8_program, int8_scope, name):
    """The clip value quantize.py chose for activation ``name`` (its quantize_linear scale)."""
    for op in int8_program.global_block().ops:
        if op.type == "quantize_linear" and op.input("X")[0] == name:
            return float(np.asarray(int8_scope.find_var(op.input("Scale")[0]).get_tensor()).reshape(-1)[0])
    return None


def main(argv=None):
    args = parse_args(argv)
    import paddle
    from utils import inference
    from utils.modeling import load_tokenizer
    from utils.quant_eval import QuantData
    from utils.quant_ptq import quant_sites
    info = inference.read_info(args.fp32)
    tok = load_tokenizer(os.path.join(os.path.dirname(os.path.abspath(args.fp32)), info["tokenizer_dir"]))
    data = QuantData(argparse.Namespace(model_prefix=args.fp32, data_dir=args.data_dir), info, tok,
                     int(info.get("max_seq_length") or 128), pools=False)
    if data.kind != "classification":
        raise UserError(f"--fp32 {args.fp32}: a {data.kind} model; this check reads classification logits")
    feats = next(iter(data.dev.values()))[:args.examples]
    sites = quant_sites(args.fp32)
    paddle.enable_static()
    tmp = tempfile.mkdtemp(prefix="int8_fidelity_")
    try:
        fexe, fscope, fprog, _, ffetch = load(args.fp32)
        qexe, qscope, qprog, qfeeds, qfetch = load(args.int8)
        norms = [op.output("Y")[0] for op in qprog.global_block().ops if op.type == "layer_norm"]
        lins = linear_sites(fprog, sites)
        extra = norms + sorted({n for lin in lins for n in (lin[3], lin[4])})
        # a copy of the INT8 model that also returns the LayerNorm outputs and the Linear inputs/outputs
        with paddle.static.scope_guard(qscope):
            block = qprog.global_block()
            paddle.static.save_inference_model(os.path.join(tmp, "model"), [block.var(n) for n in qfeeds],
                                               [block.var(qfetch[0].name)] + [block.var(n) for n in extra], qexe,
                                               program=qprog)
        inference.write_info(os.path.join(tmp, "model"), inference.read_info(args.int8))
        real_pred = inference.create_predictor(args.int8)          # the logits: the model as deployed
        probe = inference.create_predictor(os.path.join(tmp, "model"))   # the same with the inner tensors fetched
        weights = {lin[0]: (np.asarray(fscope.find_var(lin[1]).get_tensor()),
                            np.asarray(fscope.find_var(lin[2]).get_tensor()),
                            act_threshold(qprog, qscope, lin[3])) for lin in lins}
        order = np.argsort([len(f["input_ids"]) for f in feats], kind="stable")
        logits = {"fp32": [], "exact": [], "real": []}
        drift = {n: np.zeros(3) for n in norms}            # |exact-fp|^2, |real-fp|^2, |fp|^2
        kernel = {lin[0]: np.zeros((3, weights[lin[0]][0].shape[1])) for lin in lins}   # per channel
        probe_change = 0.0
        recipe = inference.read_info(args.int8).get("quantization", {}).get("calibration", {})
        per_channel = recipe.get("weight_quantize_type", "channel_wise_abs_max") == "channel_wise_abs_max"
        for i in range(0, len(order), args.batch_size):
            ids, seg, _ = data.collate([feats[j] for j in order[i:i + args.batch_size]])
            feed = {"input_ids": ids, "token_type_ids": seg}
            with paddle.static.scope_guard(fscope):
                f = fexe.run(fprog, feed=feed, fetch_list=[ffetch[0]] + norms)
            with paddle.static.scope_guard(qscope):
                e = qexe.run(qprog, feed=feed, fetch_list=[qfetch[0]] + norms)
            real = inference.run_predictor(real_pred, ids, seg)
            for name in probe.get_input_names():
                probe.get_input_handle(name).copy_from_cpu(feed[name])
            probe.run()
            r = [probe.get_output_handle(n).copy_to_cpu() for n in probe.get_output_names()]
            real_extra = dict(zip(extra, r[1:]))
            probe_change = max(probe_change, float(np.abs(r[0] - real).max()))
            for key, val in (("fp32", f[0]), ("exact", e[0]), ("real", real)):
                logits[key].append(val)
            mask = (ids != tok.pad_token_id)[..., None]
            for k, n in enumerate(norms):
                fa, ea, ra = f[k + 1], e[k + 1], real_extra[n]
                drift[n] += [(((ea - fa) ** 2) * mask).sum(), (((ra - fa) ** 2) * mask).sum(), ((fa ** 2) * mask).sum()]
            for name, wkey, bkey, xin, yout in lins:
                w, b, thr = weights[name]
                x, y = real_extra[xin], real_extra[yout]
                m = mask.reshape(-1)
                x, y = x.reshape(-1, x.shape[-1])[m], y.reshape(-1, y.shape[-1])[m]
                absmax = np.abs(w).max(0) if per_channel else np.full(w.shape[1], np.abs(w).max())
                sw = 127.0 / np.maximum(absmax, 1e-8)
                xq = np.clip(np.round(x * (127.0 / thr)), -127, 127) * (thr / 127.0)
                exact = xq @ (np.round(w * sw) / sw) + b
                ref = x @ w + b
                kernel[name] += [((y - exact) ** 2).sum(0), ((exact - ref) ** 2).sum(0), (ref ** 2).sum(0)]
    finally:
        paddle.disable_static()
        shutil.rmtree(tmp, ignore_errors=True)
    back = np.argsort(order)
    lg = {k: np.concatenate(v)[back] for k, v in logits.items()}
    pred = {k: v.argmax(-1) for k, v in lg.items()}

    def margin(x):   # top FP32 class against the best other class
        top = pred["fp32"]
        other = np.where(np.arange(x.shape[1])[None] == top[:, None], -np.inf, x).max(1)
        return x[np.arange(len(x)), top] - other

    mf = margin(lg["fp32"])
    res = {"examples": len(feats), "fp32": args.fp32, "int8": args.int8}
    for k in ("exact", "real"):
        d = margin(lg[k]) - mf
        res[k] = {"margin_error": float(np.abs(d).mean()), "agreement": float((pred[k] == pred["fp32"]).mean())}
    res["real_vs_exact"] = {"margin_difference": float(np.abs(margin(lg["real"]) - margin(lg["exact"])).mean()),
                            "agreement": float((pred["real"] == pred["exact"]).mean()),
                            "error_correlation": float(np.corrcoef(margin(lg["real"]) - mf, margin(lg["exact"]) - mf)[0, 1])}
    res["probe_logit_change"] = probe_change   # the fetched tensors must not change what the predictor computes
    res["layers"] = [{"tensor": n, "exact": float(np.sqrt(v[0] / v[2])), "real": float(np.sqrt(v[1] / v[2]))}
                     for n, v in drift.items()]
    res["layer0_kernels"] = {}
    for name, v in kernel.items():
        per = np.sqrt(v[0] / np.maximum(v[2], 1e-12))
        res["layer0_kernels"][name] = {"kernel_vs_exact_int8": float(np.sqrt(v[0].sum() / v[2].sum())),
                                       "exact_int8_vs_fp32": float(np.sqrt(v[1].sum() / v[2].sum())),
                                       "channels": int(len(per)), "channels_off_by_10pct": int((per > 0.1).sum()),
                                       "worst_channel": int(per.argmax()), "worst_channel_error": float(per.max())}
    print(f"{res['examples']} texts of {args.data_dir}: against the FP32 model")
    for k, label in (("exact", "exact QDQ arithmetic (static Executor)"), ("real", "INT8 predictor (oneDNN)")):
        print(f"  {label:40s} margin error {res[k]['margin_error']:.4f}  agreement {res[k]['agreement']:.4f}")
    rv = res["real_vs_exact"]
    print(f"  predictor against exact: margin difference {rv['margin_difference']:.4f}, agreement "
          f"{rv['agreement']:.4f}, correlation of their errors {rv['error_correlation']:.3f}")
    print(f"relative drift of the residual stream (LayerNorm outputs), exact / real (fetching them changed the "
          f"predictor's logits by at most {probe_change:.1e}):")
    print("  " + "  ".join(f"{r_['exact']:.3f}/{r_['real']:.3f}" for r_ in res["layers"]))
    print("layer 0 Linear kernels on the input they received: INT8 kernel vs exact int8 (exact int8 vs FP32)")
    for name, k in res["layer0_kernels"].items():
        print(f"  {name:8s} {k['kernel_vs_exact_int8']:.4f} ({k['exact_int8_vs_fp32']:.4f}); output channels off "
              f"by > 10%: {k['channels_off_by_10pct']} of {k['channels']} (worst: {k['worst_channel']}, "
              f"{k['worst_channel_error']:.2f})")
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as f:
            json.dump(res, f, indent=2)
    return res


if __name__ == "__main__":
    run_main(main)
