"""Head and FFN-neuron importance (Michel et al. 2019 / DynaBERT) and the
reordering by it that makes width slicing keep the most important units.

Typical use::

    head_imp, neuron_imp = compute_importance(teacher, batches, loss_fn)
    reorder(teacher, head_imp, neuron_imp)        # before building the supernet

:func:`split_importance` chooses the examples importance is computed on.
"""
import contextlib
import logging

import numpy as np

from .elastic_forward import fast_paths_off, forward
from .modeling import encoder_layers
from .supernet import full_config, leaf, network, restore_selection, select, selection, supernet_of

logger = logging.getLogger("bert_suite")


def clear_gradients(model):
    """Drop every parameter gradient of ``model`` (not just zero it)."""
    for p in model.parameters():
        p.clear_gradient(False)


def ffn_params(layers):
    """(linear1 weights, linear1 biases, linear2 weights) of the encoder layers."""
    w1 = [leaf(l.linear1).weight for l in layers]
    b1 = [leaf(l.linear1).bias for l in layers]
    w2 = [leaf(l.linear2).weight for l in layers]
    if any(b is None for b in b1):
        raise ValueError("compute_importance needs linear1 with a bias")
    return w1, b1, w2


@contextlib.contextmanager
def _full_model_eval(net):
    """Within: ``net`` in eval mode at full width and depth (a supernet's
    selection is restored after, and every module's training flag), and no
    gradient on any parameter before or after."""
    sup = supernet_of(net)
    saved = None
    if sup is not None:
        saved = selection(sup)
        select(sup, full_config(net), saved["elastic_width"], None)
    modes = [(m, m.training) for m in [net] + net.sublayers()]
    net.eval()
    try:
        clear_gradients(net)
        yield
    finally:
        clear_gradients(net)
        for m, training in modes:
            m.training = training
        if sup is not None:
            restore_selection(sup, saved)


def batch_gradients(model, batches, loss_fn):
    """Per batch, the numpy gradients of the loss with respect to a [L, H]
    head mask of ones, linear1's weights and biases and linear2's weights:
    ``[g_mask, g_w1 * L, g_b1 * L, g_w2 * L]``.  Eval mode, full width and
    depth (see :func:`_full_model_eval`)."""
    import paddle
    net = network(model)
    L = len(encoder_layers(net))
    H = int(encoder_layers(net)[0].self_attn.num_heads)
    w1, b1, w2 = ffn_params(encoder_layers(net))
    with _full_model_eval(net):
        head_mask = paddle.ones([L, H], dtype="float32")
        head_mask.stop_gradient = False
        targets = [head_mask] + w1 + b1 + w2
        for input_ids, token_type_ids, labels in batches:
            # paddle.grad (a partial backward) prunes a PyLayer's inputs it does not
            # need and then rejects the gradients the PyLayer returns for them
            with fast_paths_off("linear"):
                logits = forward(net, input_ids, token_type_ids, head_mask=head_mask, layers=list(range(L)))
                loss = loss_fn(logits, labels)
                grads = paddle.grad([loss], targets, allow_unused=True)
            yield [np.zeros(t.shape, dtype=np.float32) if g is None else g.numpy() for t, g in zip(targets, grads)]


def add_importance(head_imp, neuron_imp, grads, params):
    """Add one batch's gradients (as :func:`batch_gradients` yields them) to
    the importance arrays, in place; ``params`` = :func:`ffn_params`."""
    w1, b1, w2 = params
    L = len(w1)
    g_mask, g_w1, g_b1, g_w2 = grads[0], grads[1:1 + L], grads[1 + L:1 + 2 * L], grads[1 + 2 * L:]
    head_imp += np.abs(g_mask)
    for l in range(L):
        neuron_imp[l] += np.abs((w1[l].numpy() * g_w1[l]).sum(axis=0) + b1[l].numpy() * g_b1[l])
        neuron_imp[l] += np.abs((w2[l].numpy() * g_w2[l]).sum(axis=1))


def compute_importance(model, batches, loss_fn, num_layers=None, num_heads=None):
    """Head and FFN-neuron importance (Michel et al. 2019 / DynaBERT).

    head importance[l, h] = sum over batches of |d loss / d head_mask[l, h]|
    (head_mask = ones); neuron importance of FFN neuron j in layer l = sum over
    batches of |sum_i W1[i,j] dW1[i,j] + b1[j] db1[j]| + |sum_k W2[j,k] dW2[j,k]|
    -- PaddleNLP's ``compute_neuron_head_importance`` formula.  The gradient
    of each batch is used on its own (PaddleNLP's gradients accumulate across
    batches: batch t contributes |g_1 + ... + g_t|).

    ``batches`` yields (input_ids, token_type_ids, labels); ``loss_fn(logits,
    labels)`` returns a scalar.  Runs in eval mode (no dropout) at full width
    and full depth (a supernet's selection is restored afterwards), leaves
    every module's training flag as it was and NO gradient on any parameter.
    Returns (np.float32 [L, H], [np.float32 [I]] * L)."""
    net = network(model)
    layers = encoder_layers(net)
    L = len(layers)
    H = int(layers[0].self_attn.num_heads)
    if num_layers is not None and int(num_layers) != L:
        raise ValueError(f"num_layers={num_layers} but the model has {L} layers")
    if num_heads is not None and int(num_heads) != H:
        raise ValueError(f"num_heads={num_heads} but the model has {H} heads per layer")
    params = ffn_params(layers)
    head_imp = np.zeros([L, H], dtype=np.float64)
    neuron_imp = [np.zeros([int(w.shape[1])], dtype=np.float64) for w in params[0]]
    for grads in batch_gradients(net, batches, loss_fn):
        add_importance(head_imp, neuron_imp, grads, params)
    return head_imp.astype(np.float32), [n.astype(np.float32) for n in neuron_imp]


def _set(param, value):
    import paddle
    with paddle.no_grad():
        param.set_value(np.ascontiguousarray(value).astype(param.numpy().dtype))


def reorder(model, head_importance, neuron_importance):
    """Permute heads and FFN neurons of every layer by descending importance,
    in place (plain model, OFA, or a supernet's network).

    Heads: q/k/v output columns (+bias) in head_dim blocks and the matching
    out_proj input rows.  Neurons: linear1 columns (+bias) and linear2 rows.
    Function-preserving at full width; afterwards the leading heads/neurons
    are the most important, which is what width slicing keeps.  Do it before
    creating an optimizer (its moments are not permuted)."""
    net = network(model)
    layers = encoder_layers(net)
    head_importance = np.asarray(head_importance)
    if len(head_importance) != len(layers) or len(neuron_importance) != len(layers):
        raise ValueError(f"importance for {len(head_importance)}/{len(neuron_importance)} layers, "
                         f"the model has {len(layers)}")
    for l, layer in enumerate(layers):
        attn = layer.self_attn
        hd = int(attn.head_dim)
        q, k, v, o = (leaf(getattr(attn, n)) for n in ("q_proj", "k_proj", "v_proj", "out_proj"))
        n_heads = int(q.weight.shape[1]) // hd
        imp = np.asarray(head_importance[l], dtype=np.float64).reshape(-1)
        if imp.shape[0] != n_heads:
            raise ValueError(f"layer {l}: {imp.shape[0]} head importances for {n_heads} heads")
        order = np.argsort(-imp, kind="stable")
        cols = (order[:, None] * hd + np.arange(hd)[None, :]).reshape(-1)
        for lin in (q, k, v):
            _set(lin.weight, lin.weight.numpy()[:, cols])
            if lin.bias is not None:
                _set(lin.bias, lin.bias.numpy()[cols])
        _set(o.weight, o.weight.numpy()[cols, :])

        l1, l2 = leaf(layer.linear1), leaf(layer.linear2)
        nimp = np.asarray(neuron_importance[l], dtype=np.float64).reshape(-1)
        if nimp.shape[0] != int(l1.weight.shape[1]):
            raise ValueError(f"layer {l}: {nimp.shape[0]} neuron importances for {l1.weight.shape[1]} neurons")
        norder = np.argsort(-nimp, kind="stable")
        _set(l1.weight, l1.weight.numpy()[:, norder])
        if l1.bias is not None:
            _set(l1.bias, l1.bias.numpy()[norder])
        _set(l2.weight, l2.weight.numpy()[norder, :])
    return model



def split_importance(train, dev, split, ratio, max_examples, seed, flag_split="--importance_split"):
    """(training examples, importance examples): ``split`` "dev" takes the
    first ``max_examples`` of ``dev`` (and warns: model selection sees them
    too); "train" holds a seeded ``ratio`` of ``train`` (at most
    ``max_examples``, at least one) out of training."""
    if split == "dev":
        logger.warning("%s dev: importance is computed on the dev set, which also selects the best models",
                       flag_split)
        return train, dev[:max_examples]
    order = np.random.RandomState(seed).permutation(len(train))
    n = min(max(1, int(round(ratio * len(train)))), max_examples)
    held = set(order[:n].tolist())
    logger.info("importance: %d training examples held out from training (--importance_ratio %.2f)", n, ratio)
    return [t for i, t in enumerate(train) if i not in held], [train[i] for i in sorted(held)]
