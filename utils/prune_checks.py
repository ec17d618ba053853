"""The numerical checks prune.py makes before anything is published: the
cut model against the masked original, the vocabulary-pruned model against
the original on texts of kept tokens, the reloaded directory against the
model in memory.  A failed check ends the run (nothing written).
"""
import logging

import numpy as np

from .modeling import load_model

logger = logging.getLogger("bert_suite")


def encode_batches(texts, tokenizer, max_len, batch_size, labels=None):
    """(input_ids, token_type_ids, labels) numpy batches of (a, b) texts."""
    from utils.data import Example, collate, encode
    exs = [Example(a, b, None if labels is None else labels[i]) for i, (a, b) in enumerate(texts)]
    feats = encode(exs, tokenizer, max_len)
    is_reg = labels is not None and isinstance(labels[0], float)
    return [collate(feats[i:i + batch_size], tokenizer.pad_token_id, is_reg) for i in range(0, len(feats), batch_size)]


def max_diff(fn_a, fn_b, batches):
    import paddle
    worst = 0.0
    with paddle.no_grad():
        for ids, seg, *_ in batches:
            i, s = paddle.to_tensor(ids), paddle.to_tensor(seg)
            a, b = fn_a(i, s), fn_b(i, s)
            worst = max(worst, float(np.abs(a.numpy() - b.numpy()).max()))
    return worst


def encoder_out(model):
    return lambda ids, seg: model.bert(ids, token_type_ids=seg)[0]


def logits_of(model):
    return lambda ids, seg: model(ids, token_type_ids=seg)


def require(ok, what, diff, tol):
    logger.info("check %s: max |difference| = %.3e", what, diff)
    if not ok:
        raise SystemExit(f"error: check failed: {what} differ by {diff:.3e} (> {tol}); nothing written")


def check_reload(model, model_dir, head, check_texts, max_len, tolerance):
    """(c) the directory reloads strictly and computes what the model in memory computes."""
    reloaded, new_tok, _ = load_model(model_dir)
    reloaded.eval()
    check = encode_batches(check_texts, new_tok, max_len, 16)
    diff = max_diff(encoder_out(model), encoder_out(reloaded), check)
    if head:
        diff = max(diff, max_diff(logits_of(model), logits_of(reloaded), check))
    require(diff <= tolerance, "reloaded directory vs model in memory", diff, tolerance)
    return reloaded, new_tok, check, diff
