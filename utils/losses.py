"""Every loss of the suite, in one place (paddle tensors in, a scalar out).

* ``task_loss(task)``: fine-tuning and importance -- cross-entropy, MSE for
  regression, binary cross-entropy for multilabel;
* ``token_loss`` / ``token_mask``: token classification (NER), over the
  labelled positions only;
* ``soft_cross_entropy``, ``masked_mse``, ``distill_loss``: the OFA
  distillation loss of one width against the teacher.

paddle is imported inside the functions: importing this module is cheap.
"""

IGNORE_INDEX = -100   # label of positions that carry no tag (later pieces, specials, padding)


def task_loss(task):
    """The loss of ``task`` (a ``utils.tasks.TaskSpec``) as a function of (logits, labels)."""
    import paddle.nn.functional as F

    def loss(logits, labels):
        if task.is_regression:
            return F.mse_loss(logits.reshape([-1]), labels.reshape([-1]).astype(logits.dtype))
        if task.multilabel:
            return F.binary_cross_entropy_with_logits(logits, labels.astype(logits.dtype))
        return F.cross_entropy(logits, labels.reshape([-1]))
    return loss


def token_loss(logits, labels):
    """Cross-entropy averaged over the labelled positions (labels != -100)."""
    import paddle
    import paddle.nn.functional as F
    flat = labels.reshape([-1])
    ce = F.cross_entropy(logits.reshape([-1, logits.shape[-1]]), flat, ignore_index=IGNORE_INDEX,
                         reduction="none").reshape([-1])
    mask = (flat != IGNORE_INDEX).astype(ce.dtype)
    return (ce * mask).sum() / paddle.clip(mask.sum(), min=1.0)


def token_mask(input_ids, labels):
    """Real tokens for the distillation losses: positions with a label
    (each character's first piece), [B, T] bool."""
    return labels != IGNORE_INDEX


def soft_cross_entropy(student, teacher, mask=None):
    """Cross-entropy of the student against the teacher's softmax; with a
    token ``mask`` [B, T] the mean runs over real tokens only."""
    import paddle
    import paddle.nn.functional as F
    ce = -paddle.sum(F.log_softmax(student, axis=-1) * F.softmax(teacher, axis=-1), axis=-1)
    if mask is None:
        return ce.mean()
    mask = mask.astype(ce.dtype)
    return (ce * mask).sum() / paddle.clip(mask.sum(), min=1.0)


def masked_mse(a, b, mask=None):
    """MSE of [B, T, H] states; with a [B, T] ``mask``: the mean over each
    example's masked positions, then over the examples (so that every example
    weighs the same and a batch split across processes averages to the same
    loss as the whole batch)."""
    import paddle
    import paddle.nn.functional as F
    if mask is None:
        return F.mse_loss(a, b)
    m = mask.astype(a.dtype)
    # paddle.square, not ``** 2``: paddle 2.6's CPU pow kernel (forward and
    # backward) is about 7 times slower, a tenth of an OFA step
    per_example = (paddle.square(a - b).mean(axis=-1) * m).sum(axis=-1) / paddle.clip(m.sum(axis=-1), min=1.0)
    return per_example.mean()


def distill_loss(s_logits, s_hidden, t_logits, t_hidden, kind, lambda_logit, lambda_rep, token_mask=None,
                 rep_mask=None):
    """Returns (total, rep, logit) for one width.  ``kind`` is the task
    type: regression distils logits with MSE, multilabel with binary
    cross-entropy of the student's logits against the teacher's sigmoid
    probabilities (mean over examples and labels), token classification uses
    a soft cross-entropy masked to the labelled tokens (``token_mask``).
    ``rep_mask`` [B, T]: the positions whose hidden states are distilled (the
    real, non-padding tokens; default ``token_mask``): the teacher's states
    at padding mean nothing, and averaging over them would make the loss
    depend on how much padding a batch has (a launch of several processes
    pads each share to its own length)."""
    rep_mask = token_mask if rep_mask is None else rep_mask
    rep = sum(masked_mse(s, t, rep_mask) for s, t in zip(s_hidden, t_hidden)) / len(s_hidden)
    logit = logit_loss(s_logits, t_logits, kind, token_mask)
    return lambda_rep * rep + lambda_logit * logit, rep, logit


def logit_loss(s_logits, t_logits, kind, token_mask=None):
    """The logit part of :func:`distill_loss` (``kind`` and ``token_mask`` as there)."""
    import paddle.nn.functional as F
    if kind == "regression":
        return F.mse_loss(s_logits, t_logits)
    if kind == "multilabel":
        return F.binary_cross_entropy_with_logits(s_logits, F.sigmoid(t_logits))
    return soft_cross_entropy(s_logits, t_logits, token_mask if kind == "token_classification" else None)
