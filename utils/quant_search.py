"""The recipe search and the layer sensitivity of quantize.py, bounded in time.

Every *trial* quantizes the FP32 model with one recipe and one set of sites
kept FP32 (utils.quant_ptq), runs the INT8 predictor on the *search* texts
only (utils.quant_eval), and records the agreement with the FP32 model, the
divergence of the outputs and the latency of one batch (``--latency_batch``
x the model's sequence length, 5 runs alternating with the FP32 model: the
median of the per-round ratios is the speed-up).  One line
is printed per trial.  A recipe is calibrated once; later trials of it
only rewrite the program (``quant_ptq.reused_scales``).  Before a trial
starts, the time the slowest trial of its kind (calibrating or not) took is
compared with what is left of the budget; what is not tried is listed too.

* ``search_recipes``: coordinate-wise over what PaddleSlim offers --
  activation algorithm (hist at three percentiles, mse, avg, abs_max, KL),
  then the calibration size (x2, x4 batches), then the weight scale type --
  keeping the best agreement on the search texts at each step.
* ``sensitivity``: one site quantized at a time (all other sites FP32): the
  flips it causes alone on the first ``--sensitivity_examples`` search
  texts, ties broken by the divergence (not timed: the speed of a model
  with one int8 op says nothing).
* ``choose_skips``: ``N`` keeps the N most sensitive sites FP32; ``auto``
  adds them one at a time until the search agreement reaches the target.
* ``choose``: what quantize.py runs -- the search, then the sensitivity,
  as its flags ask, with what was tried and what the budget left out.
"""
import logging
import os
import shutil
import time

import numpy as np

from . import inference, quant_guard, quant_ptq

logger = logging.getLogger("bert_suite")
TIMED_RUNS = 5


def paired_latency(fp32, int8, ids, rounds=TIMED_RUNS):
    """Median milliseconds of FP32 and INT8 on one batch, timed alternately
    after a warm-up, and the median of the per-round ratios (FP32 / INT8):
    on a machine shared with other jobs a slow spell hits both runs of a
    round, so the ratio is steadier than either time (5 INT8 runs alone of
    the tiny test model ranged 1x-6x the FP32 time under load)."""
    seg = np.zeros_like(ids)
    times = {"fp32": [], "int8": []}
    for pred in (fp32, int8):
        inference.run_predictor(pred, ids, seg)
    for _ in range(rounds):
        for name, pred in (("fp32", fp32), ("int8", int8)):
            t = time.perf_counter()
            inference.run_predictor(pred, ids, seg)
            times[name].append((time.perf_counter() - t) * 1e3)
    ratio = np.asarray(times["fp32"]) / np.asarray(times["int8"])
    return {"fp32": float(np.median(times["fp32"])), "int8": float(np.median(times["int8"])),
            "speedup": float(np.median(ratio))}


def latency_batch(feats, batch, seq_len):
    """A [batch, seq_len] int64 batch of real token ids (the search texts'
    pieces, concatenated and cut): latency depends on the shape only."""
    ids = np.concatenate([np.asarray(f["input_ids"], dtype=np.int64) for f in feats[:4 * batch]] or
                         [np.ones(1, np.int64)])
    return np.resize(ids, (batch, seq_len))


class Searcher:
    """Runs and records trials (see the module docstring)."""

    def __init__(self, args, data, feed_names, work, sites, fp32_predictor, deadline):
        self.args, self.data, self.feed_names, self.work = args, data, feed_names, work
        self.sites = sites
        self.by_name = {s["name"]: s for s in sites}
        self.head = [] if args.quantize_head else quant_ptq.head_skip(sites)
        self.deadline = deadline
        self.trials, self.not_tried = [], []
        self.slowest = {False: 0.0, True: 0.0}   # by: were the recipe's scales already calibrated
        self.scales = {}   # recipe -> its calibrated scales (quant_ptq.reused_scales)
        self.lat_ids = latency_batch(data.search or data.held_out, args.latency_batch, data.max_seq_length)
        self.fp32 = fp32_predictor
        self.ref, _ = data.outputs(fp32_predictor, data.search, args.eval_batch_size)
        print(f"search: {len(data.search)} search texts; latency at batch {args.latency_batch} x "
              f"{data.max_seq_length}; budget {args.search_budget:g} s", flush=True)

    def skip_tensors(self, fp32_sites):
        return set(self.head) | {self.by_name[n]["key"] for n in fp32_sites}

    def time_left(self):
        return self.deadline - time.time()

    def trial(self, recipe, fp32_sites=(), label="", timed=True, texts=None):
        """Quantize with ``recipe`` keeping ``fp32_sites`` FP32 and measure on
        the first ``texts`` search texts (default: all) and the latency if
        ``timed``; None if the budget does not allow it."""
        what = f"{label or describe(recipe)}" + (f" fp32[{len(fp32_sites)}]" if fp32_sites else "")
        scales = self.scales.setdefault(describe(recipe), {})
        cached = bool(scales)
        if self.trials and self.time_left() < (self.slowest[cached] or self.slowest[False]):
            self.not_tried.append(what)
            return None
        t0 = time.time()
        out_dir = os.path.join(self.work, f"trial{len(self.trials)}")
        try:
            batches = self.data.calibration_batches(recipe["batch_num"], self.args.batch_size)
            prefix = quant_ptq.run_ptq(self.args.model_prefix, recipe, batches, self.feed_names, out_dir,
                                       self.skip_tensors(fp32_sites), self.args.with_observers,
                                       self.args.quant_format == "qdq", scales)
            pred = inference.create_predictor(prefix, threads=self.args.threads, mkldnn=True, int8=True)
            n = texts or len(self.data.search)
            outs, _ = self.data.outputs(pred, self.data.search[:n], self.args.eval_batch_size)
            lat = paired_latency(self.fp32, pred, self.lat_ids) if timed else None
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)
        ref = self.ref[:len(outs)]
        agree = quant_guard.agreement(self.data.kind, ref, outs, self.data.label_list)
        lat = lat or {}
        rec = {"what": what, "recipe": dict(recipe), "fp32_sites": list(fp32_sites), "agreement": agree["value"],
               "flips": agree.get("flips"), "divergence": quant_guard.divergence(self.data.kind, ref, outs), "texts": len(outs),
               "latency_ms": lat.get("int8"), "fp32_latency_ms": lat.get("fp32"),
               "speedup_vs_fp32": lat.get("speedup"), "seconds": time.time() - t0}
        self.slowest[cached] = max(self.slowest[cached], rec["seconds"])
        self.trials.append(rec)
        speed = f"{lat['int8']:7.1f} ms ({lat['speedup']:.2f}x FP32)" if lat else "(not timed)"
        print(f"  tried {what:<44} agreement {rec['agreement']:.4f}  divergence {rec['divergence']:.4f}  "
              f"{speed}  [{rec['seconds']:.0f} s]", flush=True)
        return rec


def describe(recipe):
    extra = f"@{recipe['hist_percent']:g}" if recipe["algo"] == "hist" else ""
    wq = "" if recipe["weight_quantize_type"] == "channel_wise_abs_max" else " w:abs_max"
    return f"{recipe['algo']}{extra} x{recipe['batch_num']}{wq}"


def _better(a, b):
    """Is trial a better than trial b (agreement, then smaller divergence)?"""
    return b is None or (a["agreement"], -a["divergence"]) > (b["agreement"], -b["divergence"])


def _best_of(searcher, variants, best):
    for recipe in variants:
        rec = searcher.trial(recipe)
        if rec is not None and _better(rec, best):
            best = rec
    return best


def search_recipes(searcher, base, algos, max_batches):
    """Best recipe on the search texts, coordinate by coordinate."""
    best = searcher.trial(base)
    algo_variants = []
    for algo in algos:
        if algo == "hist":
            algo_variants += [dict(base, algo="hist", hist_percent=p) for p in (0.999, 0.9999, 0.99999)]
        else:
            algo_variants.append(dict(base, algo=algo))
    algo_variants = [r for r in algo_variants if r != base]
    best = _best_of(searcher, algo_variants, best)
    sizes = [base["batch_num"] * m for m in (2, 4) if base["batch_num"] * m <= max_batches]
    best = _best_of(searcher, [dict(best["recipe"], batch_num=n) for n in sizes], best)
    other = "abs_max" if base["weight_quantize_type"] == "channel_wise_abs_max" else "channel_wise_abs_max"
    best = _best_of(searcher, [dict(best["recipe"], weight_quantize_type=other)], best)
    return best


def sensitivity(searcher, recipe):
    """[(site name, trial)] of every body site quantized alone, most
    sensitive first; sites the budget left out come last, untried."""
    body = [s["name"] for s in searcher.sites if not s["head"]]
    ranked = []
    for name in body:
        rec = searcher.trial(recipe, [n for n in body if n != name], label=f"only {name}", timed=False,
                             texts=searcher.args.sensitivity_examples)
        ranked.append((name, rec))
    untried = {"agreement": 2.0, "divergence": 0.0}
    return sorted(ranked, key=lambda x: ((x[1] or untried)["agreement"], -(x[1] or untried)["divergence"]))


def choose_skips(searcher, recipe, ranked, mode, target, max_skip):
    """Sites to keep FP32 and the trial that measured them (None: not measured)."""
    order = [name for name, rec in ranked if rec is not None]
    if mode != "auto":
        chosen = order[:int(mode)]
        return chosen, searcher.trial(recipe, chosen, label=f"{describe(recipe)} worst {len(chosen)} FP32")
    best, chosen = None, []
    for k in range(1, min(max_skip, len(order)) + 1):
        rec = searcher.trial(recipe, order[:k], label=f"{describe(recipe)} worst {k} FP32")
        if rec is None:
            break
        if _better(rec, best):
            best, chosen = rec, order[:k]
        if rec["agreement"] >= target:
            break
    return chosen, best


def choose(args, data, feed_names, work, fp32, sites, recipe, fp32_sites):
    """quantize.py's choice: the recipe, the sites kept FP32 and the
    search's record.  ``recipe`` (the flags' recipe) and ``fp32_sites`` (the
    ops --skip_layers names) stand unless --search / --skip_layers auto|N
    ask for the search (on the search texts only, within --search_budget)."""
    if not args.use_search_texts:
        return recipe, fp32_sites, None
    start = time.time()
    searcher = Searcher(args, data, feed_names, work, sites, fp32, start + args.search_budget)
    searcher.start = start
    record = {"budget_seconds": args.search_budget, "search_texts": len(data.search)}
    best = None
    if args.search:
        max_batches = len(data.calibration_pool) // args.batch_size
        if args.sensitivity:   # leave half of the budget to the sensitivity
            searcher.deadline = time.time() + args.search_budget / 2
        best = search_recipes(searcher, recipe, args.search_algos, max_batches)
        searcher.deadline = searcher.start + args.search_budget
        recipe = best["recipe"]
        print(f"search: best recipe {describe(recipe)} (agreement {best['agreement']:.4f} on the "
              f"search texts)", flush=True)
    elif args.skip_layers == "auto":
        best = searcher.trial(recipe)
    met = best is not None and best["agreement"] >= args.min_agreement
    if args.skip_layers == "auto" and met:
        print(f"search: agreement on the search texts already >= --min_agreement {args.min_agreement:g}: no op "
              f"needs to stay FP32 (--skip_layers N runs the sensitivity anyway)", flush=True)
    elif args.sensitivity:
        ranked = sensitivity(searcher, recipe)
        record["sensitivity"] = [{"site": n, "agreement": r and r["agreement"], "divergence": r and r["divergence"]}
                                 for n, r in ranked]
        fp32_sites, rec = choose_skips(searcher, recipe, ranked, args.skip_layers, args.min_agreement,
                                                    args.max_skip)
        print(f"search: keeping {len(fp32_sites)} op(s) FP32: {', '.join(fp32_sites) or '-'}"
              + (f" (agreement {rec['agreement']:.4f} on the search texts)" if rec else ""), flush=True)
    if searcher.not_tried:
        print(f"search: budget {args.search_budget:g} s spent; not tried: {'; '.join(searcher.not_tried)}",
              flush=True)
    record.update(tried=searcher.trials, not_tried=searcher.not_tried)
    return recipe, fp32_sites, record
