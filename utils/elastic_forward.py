"""The BERT forward of the elastic supernet, with the suite's CPU fast paths.

:func:`forward` walks the modules of a PaddleNLP
``BertForSequenceClassification`` / ``BertForTokenClassification`` (plain, or
a supernet's network) itself:

* every sublayer is *called as a module* (or, for linear layers on CPU, run
  with the very weights and sizes the module would use), so PaddleSlim's
  ``Block`` wrappers pick up the active sub-network set by
  :func:`utils.supernet.set_width`;
* attention is computed here, with the head count read off the projected
  tensor (``q.shape[-1] // head_dim``), the 1/sqrt(head_dim) scaling kept and
  ``MultiHeadAttention.num_heads`` never mutated (paddlenlp's patch mutates it
  and loses a head to float rounding at width 5/6).

The CPU fast paths (each with its measured reason below): an ``addmm``
linear layer, numpy dropout masks, the padding mask expanded once per head
count.  :func:`stock_ops` turns them off (with paddle's stride kernels on):
the step upstream runs.
"""
import contextlib
import functools

import numpy as np

from . import compat
from .supernet import block_config, leaf, network, supernet_of
from .widths import check_layers

# The CPU fast paths of :func:`forward` (see :func:`stock_ops`).
_FAST = {"linear": True, "dropout": True, "mask": True}
# The fake quantization :func:`forward` applies (a utils.qat.FakeQuant; None: off), see :func:`simulated`.
_SIM = {"sim": None}


@contextlib.contextmanager
def simulated(sim):
    """Run :func:`forward` with ``sim`` (:class:`utils.qat.FakeQuant`) at
    every op post-training quantization quantizes: each encoder Linear
    (``sim.linear``) and both operands of the two attention products
    (``sim.act``).  Layers ``sim`` does not know run unchanged."""
    prev, _SIM["sim"] = _SIM["sim"], sim
    try:
        yield sim
    finally:
        _SIM["sim"] = prev


class _DropoutRNG:
    """The generator of :func:`dropout`'s masks on CPU (numpy's PCG64)."""
    rng = np.random.Generator(np.random.PCG64(0))


def seed_dropout(seed):
    """Seed the generator of the CPU dropout masks (the training loop
    re-seeds it with paddle's generator before every step)."""
    _DropoutRNG.rng = np.random.Generator(np.random.PCG64(int(seed)))


def dropout(x, p, training):
    """Inverted dropout (``upscale_in_train``, as paddle's default).

    On CPU the keep-mask comes from numpy's PCG64: paddle 2.6's CPU dropout
    draws every element from an mt19937 engine on one thread, and was the
    largest single cost of an OFA training step at batch 8 (a seventh of
    it); numpy fills the same mask about twice as fast.  The mask is a constant
    of the graph, so the backward is one multiplication.  On other devices
    paddle's own dropout runs."""
    if not training or not p:
        return x
    import paddle
    if not (_FAST["dropout"] and x.place.is_cpu_place()):
        import paddle.nn.functional as F
        return F.dropout(x, p, training=True, mode="upscale_in_train")
    if p >= 1:
        return x * 0.0
    keep = _DropoutRNG.rng.random(tuple(int(d) for d in x.shape), dtype=np.float32) >= np.float32(p)
    scale = keep.astype(np.float32)
    scale *= np.float32(1.0 / (1.0 - p))
    return x * paddle.to_tensor(scale, dtype=x.dtype, place=x.place)


def _linear_sizes(layer, x):
    """(leaf, in, out, config) that ``layer(x)`` would use: an ``nn.Linear``, or a
    PaddleSlim ``Block`` around a ``SuperLinear`` -- the active config looked
    up as ``OFA.layers_forward`` looks it up, the size computed as
    ``SuperLinear.forward`` computes it.  None for anything else."""
    import paddle
    fn = leaf(layer)
    if fn is layer:
        return (fn, None, None, None) if type(fn) is paddle.nn.Linear else None
    found = block_config(layer)
    if found is None:
        return None
    fn, config = found
    ratio, channel = config.get("expand_ratio"), config.get("channel")
    if ratio is not None and channel is not None:
        return None
    out = int(ratio * fn.base_output_dim) if ratio is not None else \
        int(channel) if channel is not None else int(fn._out_features)
    return fn, int(x.shape[-1]), out, {"expand_ratio": ratio, "channel": channel}


def linear(layer, x, scale=None):
    """``layer(x)`` (times ``scale``) for the linear layers of the encoder.

    On CPU an ``nn.Linear`` or a PaddleSlim super linear layer runs as one
    ``addmm`` (the bias and ``scale`` folded into the GEMM) with a backward
    of three GEMMs (:class:`_AddmmLinear`): paddle 2.6's CPU linear adds the
    bias with a broadcasting kernel and reduces its gradient with a column
    sum, the two together as slow as the matrix products themselves
    (measured at batch 32: 190 ms against 108 ms for a 384->1536 layer,
    forward and backward).  Anything else, and other devices, call the
    layer.  Under :func:`simulated`, a layer the simulation knows runs
    fake-quantized instead."""
    sim = _SIM["sim"]
    if sim is not None and sim.site_of(layer) is not None:
        return sim.linear(layer, x, scale)
    sizes = None if not (_FAST["linear"] and x.place.is_cpu_place()) else _linear_sizes(layer, x)
    if sizes is None:
        y = layer(x)
        return y if scale is None else y * scale
    fn, n_in, n_out, config = sizes
    weight, bias = fn.weight, fn.bias
    if n_in is not None and (int(weight.shape[0]) > n_in or int(weight.shape[1]) > n_out):
        weight = weight[:n_in, :n_out]
    if bias is not None and n_out is not None and int(bias.shape[0]) > n_out:
        bias = bias[:n_out]
    if config is not None:   # what SuperLinear.forward records of its last call
        fn.cur_config = dict(config, prune_dim=[int(d) for d in weight.shape])
    return _addmm_linear()(x, weight, bias, 1.0 if scale is None else float(scale))


@contextlib.contextmanager
def fast_paths_off(*names):
    """Within: the named entries of ``_FAST`` are off (restored after)."""
    saved = dict(_FAST)
    _FAST.update(dict.fromkeys(names, False))
    try:
        yield
    finally:
        _FAST.update(saved)


@contextlib.contextmanager
def stock_ops():
    """Within: paddle's own ops wherever the suite has a CPU fast path -- the
    layers' own forward for the linear layers, paddle's dropout, the
    broadcasting add of the padding mask, and paddle 2.6's stride kernels on
    (:func:`utils.compat.stride_kernels`).  That is the step upstream runs;
    the benchmark times it and the tests check that the fast paths compute
    the same values and gradients."""
    with compat.stride_kernels(True), fast_paths_off(*_FAST):
        yield


@functools.lru_cache(maxsize=None)
def _addmm_linear():
    """``_AddmmLinear.apply`` (the class is made on first use: paddle is
    imported lazily in this module)."""
    import paddle
    from paddle.autograd import PyLayer

    class _AddmmLinear(PyLayer):
        """y = scale * (x @ W + b), x [..., in], W [in, out], b [out] or None."""

        @staticmethod
        def forward(ctx, x, weight, bias, scale):
            lead = list(x.shape[:-1])
            x2 = paddle.reshape(x, [-1, int(x.shape[-1])])
            if bias is None:
                y = paddle.matmul(x2, weight)
                if scale != 1.0:
                    y = paddle.scale(y, scale)
            else:
                y = paddle.addmm(paddle.unsqueeze(bias, 0), x2, weight, beta=scale, alpha=scale)
            ctx.save_for_backward(x2, weight)
            ctx.meta = (lead, scale, bias is not None,
                        [not t.stop_gradient if t is not None else False for t in (x, weight, bias)])
            return paddle.reshape(y, lead + [int(weight.shape[1])])

        @staticmethod
        def backward(ctx, grad):
            x2, weight = ctx.saved_tensor()
            lead, scale, has_bias, needs = ctx.meta
            g = paddle.reshape(grad, [-1, int(grad.shape[-1])])
            if scale != 1.0:
                g = paddle.scale(g, scale)
            dx = paddle.reshape(paddle.matmul(g, weight, transpose_y=True), lead + [int(x2.shape[-1])]) \
                if needs[0] else None
            dw = paddle.matmul(x2, g, transpose_x=True) if needs[1] else None
            grads = [dx, dw]
            if has_bias:
                # the column sum as a GEMV: paddle's CPU reduce over axis 0 is ~50x slower
                grads.append(paddle.reshape(paddle.matmul(paddle.ones([1, int(g.shape[0])], g.dtype), g),
                                            [-1]) if needs[2] else None)
            return tuple(grads)

    return _AddmmLinear.apply


def _drop(module, x):
    """Apply a ``paddle.nn.Dropout`` module's rate and mode through :func:`dropout`."""
    if getattr(module, "mode", "upscale_in_train") != "upscale_in_train" or getattr(module, "axis", None):
        return module(x)
    return dropout(x, module.p, module.training)


def _embeddings(emb, input_ids, token_type_ids):
    """BertEmbeddings' forward (word + position + token type, layer norm,
    dropout), with the suite's :func:`dropout`."""
    import paddle
    ones = paddle.ones_like(input_ids, dtype="int64")
    position_ids = paddle.cumsum(ones, axis=-1) - ones
    if token_type_ids is None:
        token_type_ids = paddle.zeros_like(input_ids, dtype="int64")
    x = emb.word_embeddings(input_ids) + emb.position_embeddings(position_ids) + \
        emb.token_type_embeddings(token_type_ids)
    return _drop(emb.dropout, emb.layer_norm(x))


def _attention(attn, x, mask, head_mask_row):
    import paddle
    import paddle.nn.functional as F
    hd = int(attn.head_dim)
    q = linear(attn.q_proj, x, hd ** -0.5)     # the 1/sqrt(head_dim) scaling, folded into the GEMM
    k = linear(attn.k_proj, x)
    v = linear(attn.v_proj, x)
    width = int(q.shape[-1])
    n = width // hd
    if n < 1 or n * hd != width or int(k.shape[-1]) != width or int(v.shape[-1]) != width:
        raise RuntimeError(f"attention projections give q/k/v widths {width}/{k.shape[-1]}/{v.shape[-1]}, "
                           f"not a whole number of heads of size {hd}")

    def split(t):
        return paddle.transpose(paddle.reshape(t, [0, 0, n, hd]), perm=[0, 2, 1, 3])

    q, k, v = split(q), split(k), split(v)
    sim = _SIM["sim"]
    tag = sim.site_of(attn) if sim is not None else None
    if tag is not None:   # the scores product quantizes the scaled q and k
        q, k = sim.act(tag + ".scores", q, 0), sim.act(tag + ".scores", k, 1)
    product = paddle.matmul(q, k, transpose_y=True)
    if mask is not None:
        product = product + mask(n)
    weights = dropout(F.softmax(product), attn.dropout, attn.training)
    if head_mask_row is not None:
        if int(head_mask_row.shape[-1]) < n:
            raise ValueError(f"head_mask has {head_mask_row.shape[-1]} columns, the layer runs {n} heads")
        weights = weights * paddle.reshape(head_mask_row[:n], [1, n, 1, 1])
    if tag is not None:
        weights, v = sim.act(tag + ".context", weights, 0), sim.act(tag + ".context", v, 1)
    out = paddle.matmul(weights, v)
    out = paddle.reshape(paddle.transpose(out, perm=[0, 2, 1, 3]), [0, 0, n * hd])
    return linear(attn.out_proj, out)


class _PaddingMask:
    """The additive padding mask [B, 1, 1, T], expanded once per head count
    to the attention scores' shape [B, heads, T, T]: paddle 2.6's CPU
    broadcasting add is about 7 times slower than a same-shape add, and
    every layer would pay it (a tenth of a MiniLM forward at batch 8)."""

    def __init__(self, mask):
        self.mask, self.expanded = mask, {}

    def __call__(self, heads):
        if not _FAST["mask"]:
            return self.mask
        if heads not in self.expanded:
            import paddle
            b, _, _, t = self.mask.shape
            self.expanded[heads] = paddle.expand(self.mask, [b, heads, t, t])
        return self.expanded[heads]


def _encoder_layer(layer, src, mask, head_mask_row):
    residual = src
    if layer.normalize_before:
        src = layer.norm1(src)
    src = _attention(layer.self_attn, src, mask, head_mask_row)
    src = residual + _drop(layer.dropout1, src)
    if not layer.normalize_before:
        src = layer.norm1(src)
    residual = src
    if layer.normalize_before:
        src = layer.norm2(src)
    src = linear(layer.linear2, _drop(layer.dropout, layer.activation(linear(layer.linear1, src))))
    src = residual + _drop(layer.dropout2, src)
    if not layer.normalize_before:
        src = layer.norm2(src)
    return src


def _is_token_model(net):
    from paddlenlp.transformers import BertForSequenceClassification, BertForTokenClassification
    if isinstance(net, BertForTokenClassification):
        return True
    if isinstance(net, BertForSequenceClassification):
        return False
    raise TypeError(f"utils.elastic_forward.forward supports BertForSequenceClassification and "
                    f"BertForTokenClassification, not {type(net).__name__}")


def forward(model, input_ids, token_type_ids=None, head_mask=None, output_hidden_states=False, layers=None):
    """Run a plain PaddleNLP Bert* model or a supernet's network (``ofa.model``).

    Returns logits, or ``(logits, hidden_states)`` with hidden_states =
    [embedding output, output of each layer run].  Padding positions
    (``input_ids == pad_token_id``) get -1e4 before the softmax, as in
    BertModel.  ``head_mask``: [L, H] tensor multiplied onto the attention
    probabilities (its first ``heads`` columns for a layer running ``heads``
    heads; row = the layer's index in the full model).  ``layers``: indices of
    the encoder layers to run (default: the supernet's ``depth_layers``, else
    all).  Dropout follows each module's training flag."""
    import paddle
    net = network(model)
    token_level = _is_token_model(net)
    bert = net.bert
    enc = bert.encoder.layers
    if layers is None:
        sup = supernet_of(net)
        layers = getattr(sup, "elastic_layers", None) if sup is not None else None
    idx = list(range(len(enc))) if layers is None else check_layers(layers, len(enc))
    if head_mask is not None and int(head_mask.shape[0]) < len(enc):
        raise ValueError(f"head_mask has {head_mask.shape[0]} rows, the model has {len(enc)} layers")

    hidden = _embeddings(bert.embeddings, input_ids, token_type_ids)
    mask = _PaddingMask(paddle.unsqueeze((input_ids == bert.pad_token_id).astype(hidden.dtype) * -1e4,
                                         axis=[1, 2]))
    all_hidden = [hidden] if output_hidden_states else None
    for i in idx:
        hidden = _encoder_layer(enc[i], hidden, mask, None if head_mask is None else head_mask[i])
        if output_hidden_states:
            all_hidden.append(hidden)
    if bert.encoder.norm is not None:
        hidden = bert.encoder.norm(hidden)
    if token_level:
        logits = net.classifier(_drop(net.dropout, hidden))
    else:
        logits = net.classifier(_drop(net.dropout, bert.pooler(hidden)))
    return (logits, all_hidden) if output_hidden_states else logits



def as_layer(model, **kwargs):
    """A paddle Layer whose forward is :func:`forward` over ``model`` (with
    ``kwargs``), so that ``paddle.DataParallel`` can wrap it: DataParallel
    synchronises the gradients of what its own forward ran."""
    import paddle

    class Forward(paddle.nn.Layer):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, input_ids, token_type_ids=None):
            # the module's forward, looked up at every call (a class body is no enclosing scope)
            return forward(self.net, input_ids, token_type_ids, **kwargs)

    return Forward(model)


def model_forward(model):
    """``(input_ids, token_type_ids) -> logits`` for fine-tuning or scoring a
    plain model: :func:`forward` (the CPU fast paths above) when it can run
    ``model``, else the model's own forward (a ``paddle.DataParallel``
    wrapper, whose forward synchronises gradients: wrap :func:`as_layer`
    instead, or a class it does not know).  In eval mode both compute the
    same logits; in training the dropout masks differ (numpy's generator
    against paddle's)."""
    import paddle
    if not isinstance(model, paddle.DataParallel):
        try:
            _is_token_model(network(model))
        except TypeError:
            pass
        else:
            return lambda input_ids, token_type_ids=None: forward(model, input_ids, token_type_ids)
    return lambda input_ids, token_type_ids=None: model(input_ids, token_type_ids=token_type_ids)
