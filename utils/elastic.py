"""Width-elastic BERT (DynaBERT-style once-for-all) on PaddleSlim's OFA super layers.

The suite never installs the attention monkey patches of
``paddleslim.nas.ofa.utils.nlp_utils`` / ``paddlenlp.transformers.ofa_utils``
(see :mod:`utils.compat`).  Instead :func:`forward` walks the modules of a
PaddleNLP ``BertForSequenceClassification`` / ``BertForTokenClassification``
itself:

* every sublayer is *called as a module*, so PaddleSlim's ``Block`` wrappers
  route through ``OFA.layers_forward`` and pick up the active sub-network from
  ``ofa.current_config`` (set by :func:`set_width`);
* attention is computed here, with the head count read off the projected
  tensor (``q.shape[-1] // head_dim``), the 1/sqrt(head_dim) scaling kept and
  ``MultiHeadAttention.num_heads`` never mutated (paddlenlp's patch mutates it
  and loses a head to float rounding at width 5/6).

Widths are snapped to whole heads (DynaBERT): heads = round(w * H) >= 1, the
snapped ratio is heads / H, FFN neurons = floor(heads * I / H).  PaddleSlim's
``SuperLinear`` turns an expand ratio into a size with
``int(expand_ratio * base_output_dim)``; :func:`set_width` hands it, per
layer, the ratio ``(size + 0.5) / base_output_dim`` -- the midpoint of the
wanted integer -- and checks ``int(ratio * base) == size`` with the very same
float expression, so no float error can drop or add a column.

Typical use::

    widths = snap_widths([1.0, 0.75, 0.5], H, I)
    head_imp, neuron_imp = compute_importance(teacher, batches, loss_fn)
    reorder(teacher, head_imp, neuron_imp)        # before building the supernet
    ofa = build_supernet(teacher, widths)         # copy; teacher stays plain
    set_width(ofa, widths[1]); logits = forward(ofa.model, ids, tt)
    small = extract_subnet(ofa.model, widths[2], config, task_type)

Never call ``ofa(...)`` / ``ofa.model(...)`` at a width < 1: those run
paddle's stock attention, which reshapes with the full ``num_heads``.
"""
import contextlib
import copy
import functools
import logging
import math
import re
import sys
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .errors import UserError
from .modeling import SUITE_KEY, apply_pruned_shapes, encoder_layers, layer_shapes, model_class, suite_info

logger = logging.getLogger("bert_suite")

# Leaf layers whose output width follows the head count / FFN size.
HEAD_OUT = ("q_proj", "k_proj", "v_proj")
FFN_OUT = ("linear1",)


# --------------------------------------------------------------------------- widths
@dataclass(frozen=True)
class Width:
    requested: float   # as the user wrote it
    ratio: float       # snapped: heads / num_heads
    heads: int
    ffn: int           # FFN neurons kept

    def tag(self) -> str:
        """Directory-name tag: ``width_{tag}``."""
        return f"{self.ratio:.4f}"


_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def parse_width(text) -> float:
    """``"0.5"``, ``"1/2"``, ``"5/6"``, ``"0.8333333333333334"`` -> float.
    ValueError on anything else (names, empty, nan/inf, division by zero)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(f"width {text!r} is not a finite number")
        return value
    if not isinstance(text, str):
        raise ValueError(f"width {text!r} is not a number")
    s = text.strip()
    if "/" in s:
        num, _, den = s.partition("/")
        num, den = num.strip(), den.strip()
        if not (_NUMBER.match(num) and _NUMBER.match(den)):
            raise ValueError(f"width {text!r} is not a number or a fraction like 5/6")
        if float(den) == 0:
            raise ValueError(f"width {text!r} divides by zero")
        return float(Fraction(num) / Fraction(den))
    if not _NUMBER.match(s):
        raise ValueError(f"width {text!r} is not a number or a fraction like 5/6")
    return float(s)


def snap_widths(widths, num_heads, intermediate_size, flag="--width_mult_list"):
    """Snap width multipliers to whole heads (DynaBERT: heads = round(w * H)).

    Accepts floats or strings (parsed with :func:`parse_width`).  Raises
    :class:`UserError` naming ``flag`` for an empty list, a width <= 0 or > 1,
    or a width that keeps no head.  Widths that snap to the same head count are
    kept once (first occurrence, order preserved) with a warning."""
    num_heads, intermediate_size = int(num_heads), int(intermediate_size)
    if widths is None or len(widths) == 0:
        raise UserError(f"{flag}: no width given (expected e.g. 1.0 0.75 0.5)")
    out, seen = [], {}
    for raw in widths:
        try:
            w = parse_width(raw)
        except ValueError as e:
            raise UserError(f"{flag}: {e}")
        if w <= 0:
            raise UserError(f"{flag}: width {raw} must be > 0")
        if w > 1:
            raise UserError(f"{flag}: width {raw} is larger than 1 (the full model); widths are in (0, 1]")
        heads = int(round(w * num_heads))
        if heads < 1:
            raise UserError(f"{flag}: width {raw} keeps {heads} of {num_heads} attention heads "
                            f"(round({w:g} * {num_heads}) = 0); the smallest usable width is {1 / num_heads:.4g}")
        ratio = heads / num_heads
        ffn = heads * intermediate_size // num_heads   # exact floor(ratio * I), no float error
        if heads in seen:
            logger.warning("%s: width %s snaps to %d/%d heads like width %s before it; using it once",
                           flag, raw, heads, num_heads, seen[heads])
            continue
        if abs(ratio - w) > 1e-6:
            logger.info("%s: width %s snapped to %d/%d heads = %.4f (FFN %d of %d)",
                        flag, raw, heads, num_heads, ratio, ffn, intermediate_size)
        seen[heads] = raw
        out.append(Width(requested=w, ratio=ratio, heads=heads, ffn=ffn))
    return out


# --------------------------------------------------------------------------- supernet plumbing
class _Never:  # isinstance(x, _Never) is always False
    pass


def _block_types():
    # A Block can only exist once paddleslim's OFA package is imported: no need to
    # import it (or to fail without it) for plain models.
    if "paddleslim.nas.ofa.layers_base" not in sys.modules:
        return _Never
    return sys.modules["paddleslim.nas.ofa.layers_base"].BaseBlock


def _ofa_type():
    if "paddleslim.nas.ofa.ofa" not in sys.modules:
        return _Never
    return sys.modules["paddleslim.nas.ofa.ofa"].OFA


def _leaf(layer):
    """The layer holding the weights: ``Block.fn`` for a super layer, else itself."""
    return layer.fn if hasattr(layer, "fn") and isinstance(layer, _block_types()) else layer


def _network(model):
    """The Bert* network of an OFA wrapper, or the model itself."""
    import paddle
    if isinstance(model, paddle.DataParallel):
        raise TypeError("pass the unwrapped network (model._layers): calling it directly would skip "
                        "DataParallel's gradient synchronisation; wrap a Layer that calls "
                        "utils.elastic.forward in DataParallel instead")
    if isinstance(model, _ofa_type()):
        return model.model
    return model


def _supernet_of(net):
    """The OFA object driving ``net``'s Blocks, or None for a plain model."""
    sup = net.__dict__.get("_elastic_ofa")
    if sup is not None:
        return sup
    BaseBlock = _block_types()
    for layer in net.sublayers():
        if isinstance(layer, BaseBlock):
            return layer.__dict__.get("supernet")
    return None


def _blocks(net):
    """(name, block) of every non-fixed Block, names as OFA keys its config."""
    BaseBlock = _block_types()
    return [(n, l) for n, l in net.named_sublayers() if isinstance(l, BaseBlock) and not l.fixed]


def _full_config(net):
    return {name: ({"expand_ratio": 1.0} if "expand_ratio" in block.candidate_config else {})
            for name, block in _blocks(net)}


def _exact_ratio(leaf, size, what):
    """Expand ratio that makes SuperLinear produce exactly ``size`` outputs."""
    base = int(leaf.base_output_dim)
    if size > base:
        raise ValueError(f"{what}: {size} outputs requested but the layer has only {base}")
    if size == base:
        return 1.0
    ratio = (size + 0.5) / base
    if int(ratio * base) != size:  # the expression SuperLinear.forward evaluates
        raise AssertionError(f"{what}: expand ratio {ratio!r} gives {int(ratio * base)} outputs, not {size}")
    return ratio


def build_supernet(model, widths):
    """A width-elastic OFA supernet built from a COPY of ``model``.

    ``model`` (a full-size plain PaddleNLP Bert* model) is left untouched and
    stays usable as the teacher.  The copy is converted with
    ``Convert(supernet(expand_ratio=[snapped ratios..., 1.0]))`` (1.0 makes the
    super layers exactly the original sizes), the teacher's weights are copied
    in (strictly: every tensor, same shape), and it is wrapped in
    ``OFA(net, elastic_order=["width"])``.  The full width is selected.
    The global paddle RNG state is restored afterwards, so building a supernet
    does not shift seeded random streams."""
    import paddle
    from paddleslim.nas.ofa import OFA
    from paddleslim.nas.ofa.convert_super import Convert, supernet
    from . import compat
    compat.patch_paddleslim()

    if isinstance(model, _ofa_type()) or _supernet_of(model) is not None:
        raise TypeError("build_supernet needs a plain model (the teacher), not a supernet")
    config = model.config
    heads, ffn = layer_shapes(model)
    if any(h != config.num_attention_heads for h in heads) or any(m != config.intermediate_size for m in ffn):
        raise ValueError("build_supernet needs a full-size model; this one is pruned "
                         f"(heads {heads}, FFN {ffn})")
    widths = list(widths)
    for w in widths:
        if not isinstance(w, Width):
            raise TypeError(f"widths must be Width objects from snap_widths, got {w!r}")
        if w.heads > config.num_attention_heads:
            raise ValueError(f"width {w.ratio} has {w.heads} heads but the model only {config.num_attention_heads}")
    ratios = sorted({float(w.ratio) for w in widths} | {1.0})

    rng = paddle.get_rng_state()
    try:
        net = type(model)(copy.deepcopy(config))
        net = Convert(supernet(expand_ratio=ratios)).convert(net)
    finally:
        paddle.set_rng_state(rng)

    # Copy the teacher's weights (Convert initialises the super layers afresh).
    src = model.state_dict()
    dst = net.state_dict()
    mapped = {_plain_name(k): k for k in dst}
    missing = sorted(set(mapped) - set(src))
    extra = sorted(set(src) - set(mapped))
    if missing or extra:
        raise RuntimeError(f"supernet and model do not match: missing {missing[:3]}, unexpected {extra[:3]}")
    with paddle.no_grad():
        for plain, name in mapped.items():
            if list(dst[name].shape) != list(src[plain].shape):
                raise RuntimeError(f"{name}: supernet shape {dst[name].shape} != model shape {src[plain].shape}")
            dst[name].set_value(src[plain])
    if model.training:
        net.train()
    else:
        net.eval()

    ofa = OFA(net, elastic_order=["width"])
    net.__dict__["_elastic_ofa"] = ofa        # plain attribute: no sublayer cycle
    ofa.elastic_widths = widths
    set_width(ofa, None)
    return ofa


def _plain_name(name):
    """Parameter name of the plain model: drop the ``fn`` level of Blocks."""
    return ".".join(p for p in name.split(".") if p != "fn")


def set_width(ofa, width, depth_layers=None):
    """Select the active sub-network of ``ofa`` (``width=None``: full width).

    The per-layer config is built BY LAYER NAME: q_proj/k_proj/v_proj get
    ``width.heads * head_dim`` outputs and linear1 ``width.ffn`` outputs in
    every encoder layer; every other Block runs at full size.  (PaddleSlim's
    ``dynabert_config`` guesses positions instead.)  The config is stored as
    ``ofa.current_config`` (what ``Block``s read) and ``ofa.net_config``.
    ``depth_layers``: indices of the encoder layers to run (None = all);
    :func:`forward` uses them unless given ``layers`` explicitly."""
    if not isinstance(ofa, _ofa_type()):
        raise TypeError("set_width needs the OFA object returned by build_supernet")
    net = ofa.model
    config = _full_config(net)
    layers = encoder_layers(net)
    if width is not None:
        for i, layer in enumerate(layers):
            prefix = _layer_prefix(net, layer)
            attn = layer.self_attn
            for proj in HEAD_OUT:
                name = f"{prefix}.self_attn.{proj}"
                if name not in config:
                    raise RuntimeError(f"{name} is not an elastic block of the supernet")
                config[name] = {"expand_ratio": _exact_ratio(_leaf(getattr(attn, proj)),
                                                             width.heads * attn.head_dim, name)}
            for lin in FFN_OUT:
                name = f"{prefix}.{lin}"
                if name not in config:
                    raise RuntimeError(f"{name} is not an elastic block of the supernet")
                config[name] = {"expand_ratio": _exact_ratio(_leaf(getattr(layer, lin)), width.ffn, name)}
    if depth_layers is not None:
        depth_layers = _check_layers(depth_layers, len(layers))
    ofa.current_config = config
    ofa.net_config = config
    ofa.elastic_width = width
    ofa.elastic_layers = depth_layers
    return config


def _layer_prefix(net, layer):
    cache = net.__dict__.setdefault("_elastic_prefixes", {})
    key = id(layer)
    if key not in cache:
        for name, sub in net.named_sublayers():
            if sub is layer:
                cache[key] = name
                break
        else:
            raise RuntimeError("encoder layer not found in the network")
    return cache[key]


def _check_layers(layers, n):
    idx = [int(i) for i in layers]
    if not idx:
        raise ValueError("layers: at least one encoder layer must run")
    if any(i < 0 or i >= n for i in idx):
        raise ValueError(f"layers {idx}: indices must be in 0..{n - 1}")
    if len(set(idx)) != len(idx):
        raise ValueError(f"layers {idx}: duplicate index")
    return idx


# --------------------------------------------------------------------------- forward
# The CPU fast paths of :func:`forward` (see :func:`stock_ops`).
_FAST = {"linear": True, "dropout": True, "mask": True}


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
    leaf = _leaf(layer)
    if leaf is layer:
        return (leaf, None, None, None) if type(leaf) is paddle.nn.Linear else None
    sup = layer.__dict__.get("supernet")
    ofa_layers = sys.modules.get("paddleslim.nas.ofa.layers")
    if sup is None or ofa_layers is None or type(leaf) is not ofa_layers.SuperLinear:
        return None
    config = {}
    current = getattr(sup, "current_config", None)
    if current is not None:
        name = sup._key2name[layer.key]
        skip = sup._skip_layers
        if not layer.fixed and (skip is None or name not in skip) and \
                leaf.weight.name not in sup._cannot_changed_layer:
            config = current[name]
    ratio, channel = config.get("expand_ratio"), config.get("channel")
    if ratio is not None and channel is not None:
        return None
    out = int(ratio * leaf.base_output_dim) if ratio is not None else \
        int(channel) if channel is not None else int(leaf._out_features)
    return leaf, int(x.shape[-1]), out, {"expand_ratio": ratio, "channel": channel}


def linear(layer, x, scale=None):
    """``layer(x)`` (times ``scale``) for the linear layers of the encoder.

    On CPU an ``nn.Linear`` or a PaddleSlim super linear layer runs as one
    ``addmm`` (the bias and ``scale`` folded into the GEMM) with a backward
    of three GEMMs (:class:`_AddmmLinear`): paddle 2.6's CPU linear adds the
    bias with a broadcasting kernel and reduces its gradient with a column
    sum, the two together as slow as the matrix products themselves
    (measured at batch 32: 190 ms against 108 ms for a 384->1536 layer,
    forward and backward).  Anything else, and other devices, call the
    layer."""
    sizes = None if not (_FAST["linear"] and x.place.is_cpu_place()) else _linear_sizes(layer, x)
    if sizes is None:
        y = layer(x)
        return y if scale is None else y * scale
    leaf, n_in, n_out, config = sizes
    weight, bias = leaf.weight, leaf.bias
    if n_in is not None and (int(weight.shape[0]) > n_in or int(weight.shape[1]) > n_out):
        weight = weight[:n_in, :n_out]
    if bias is not None and n_out is not None and int(bias.shape[0]) > n_out:
        bias = bias[:n_out]
    if config is not None:   # what SuperLinear.forward records of its last call
        leaf.cur_config = dict(config, prune_dim=[int(d) for d in weight.shape])
    return _addmm_linear()(x, weight, bias, 1.0 if scale is None else float(scale))


@contextlib.contextmanager
def _fast_paths_off(*names):
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
    (:mod:`utils.compat` turns them off).  That is the step upstream runs;
    the benchmark times it and the tests check that the fast paths compute
    the same values and gradients."""
    import paddle
    stride = paddle.get_flags(["FLAGS_use_stride_kernel"])["FLAGS_use_stride_kernel"]
    paddle.set_flags({"FLAGS_use_stride_kernel": True})
    try:
        with _fast_paths_off(*_FAST):
            yield
    finally:
        paddle.set_flags({"FLAGS_use_stride_kernel": stride})


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
    product = paddle.matmul(q, k, transpose_y=True)
    if mask is not None:
        product = product + mask(n)
    weights = dropout(F.softmax(product), attn.dropout, attn.training)
    if head_mask_row is not None:
        if int(head_mask_row.shape[-1]) < n:
            raise ValueError(f"head_mask has {head_mask_row.shape[-1]} columns, the layer runs {n} heads")
        weights = weights * paddle.reshape(head_mask_row[:n], [1, n, 1, 1])
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
    raise TypeError(f"utils.elastic.forward supports BertForSequenceClassification and "
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
    net = _network(model)
    token_level = _is_token_model(net)
    bert = net.bert
    enc = bert.encoder.layers
    if layers is None:
        sup = _supernet_of(net)
        layers = getattr(sup, "elastic_layers", None) if sup is not None else None
    idx = list(range(len(enc))) if layers is None else _check_layers(layers, len(enc))
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


# --------------------------------------------------------------------------- importance and reordering
def clear_gradients(model):
    """Drop every parameter gradient of ``model`` (not just zero it)."""
    for p in model.parameters():
        p.clear_gradient(False)


def compute_importance(model, batches, loss_fn, num_layers=None, num_heads=None, upstream_cumulative=False):
    """Head and FFN-neuron importance (Michel et al. 2019 / DynaBERT).

    head importance[l, h] = sum over batches of |d loss / d head_mask[l, h]|
    (head_mask = ones); neuron importance of FFN neuron j in layer l = sum over
    batches of |sum_i W1[i,j] dW1[i,j] + b1[j] db1[j]| + |sum_k W2[j,k] dW2[j,k]|
    -- PaddleNLP's ``compute_neuron_head_importance`` formula.  The gradient
    of each batch is used on its own; ``upstream_cumulative=True`` reproduces
    PaddleNLP exactly, whose gradients accumulate across batches (batch t
    contributes |g_1 + ... + g_t|).

    ``batches`` yields (input_ids, token_type_ids, labels); ``loss_fn(logits,
    labels)`` returns a scalar.  Runs in eval mode (no dropout) at full width
    and full depth (a supernet's selection is restored afterwards), leaves
    every module's training flag as it was and NO gradient on any parameter.
    Returns (np.float32 [L, H], [np.float32 [I]] * L)."""
    import paddle
    net = _network(model)
    layers = encoder_layers(net)
    L = len(layers)
    H = int(layers[0].self_attn.num_heads)
    if num_layers is not None and int(num_layers) != L:
        raise ValueError(f"num_layers={num_layers} but the model has {L} layers")
    if num_heads is not None and int(num_heads) != H:
        raise ValueError(f"num_heads={num_heads} but the model has {H} heads per layer")

    w1 = [_leaf(l.linear1).weight for l in layers]
    b1 = [_leaf(l.linear1).bias for l in layers]
    w2 = [_leaf(l.linear2).weight for l in layers]
    if any(b is None for b in b1):
        raise ValueError("compute_importance needs linear1 with a bias")
    sup = _supernet_of(net)
    saved_sup = None
    if sup is not None:
        saved_sup = (getattr(sup, "current_config", None), sup.net_config, getattr(sup, "elastic_layers", None))
        full = _full_config(net)
        sup.current_config, sup.net_config, sup.elastic_layers = full, full, None
    modes = [(m, m.training) for m in [net] + net.sublayers()]
    net.eval()

    head_imp = np.zeros([L, H], dtype=np.float64)
    neuron_imp = [np.zeros([int(w.shape[1])], dtype=np.float64) for w in w1]
    cum = None
    try:
        clear_gradients(net)
        head_mask = paddle.ones([L, H], dtype="float32")
        head_mask.stop_gradient = False
        targets = [head_mask] + w1 + b1 + w2
        for batch in batches:
            input_ids, token_type_ids, labels = batch
            # paddle.grad (a partial backward) prunes a PyLayer's inputs it does not
            # need and then rejects the gradients the PyLayer returns for them
            with _fast_paths_off("linear"):
                logits = forward(net, input_ids, token_type_ids, head_mask=head_mask, layers=list(range(L)))
                loss = loss_fn(logits, labels)
                grads = paddle.grad([loss], targets, allow_unused=True)
            grads = [np.zeros(t.shape, dtype=np.float32) if g is None else g.numpy() for t, g in zip(targets, grads)]
            if upstream_cumulative:
                cum = grads if cum is None else [c + g for c, g in zip(cum, grads)]
                grads = cum
            g_mask, g_w1, g_b1, g_w2 = grads[0], grads[1:1 + L], grads[1 + L:1 + 2 * L], grads[1 + 2 * L:]
            head_imp += np.abs(g_mask)
            for l in range(L):
                neuron_imp[l] += np.abs((w1[l].numpy() * g_w1[l]).sum(axis=0) + b1[l].numpy() * g_b1[l])
                neuron_imp[l] += np.abs((w2[l].numpy() * g_w2[l]).sum(axis=1))
    finally:
        clear_gradients(net)
        for m, training in modes:
            m.training = training
        if sup is not None:
            sup.current_config, sup.net_config, sup.elastic_layers = saved_sup
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
    net = _network(model)
    layers = encoder_layers(net)
    head_importance = np.asarray(head_importance)
    if len(head_importance) != len(layers) or len(neuron_importance) != len(layers):
        raise ValueError(f"importance for {len(head_importance)}/{len(neuron_importance)} layers, "
                         f"the model has {len(layers)}")
    for l, layer in enumerate(layers):
        attn = layer.self_attn
        hd = int(attn.head_dim)
        q, k, v, o = (_leaf(getattr(attn, n)) for n in ("q_proj", "k_proj", "v_proj", "out_proj"))
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

        l1, l2 = _leaf(layer.linear1), _leaf(layer.linear2)
        nimp = np.asarray(neuron_importance[l], dtype=np.float64).reshape(-1)
        if nimp.shape[0] != int(l1.weight.shape[1]):
            raise ValueError(f"layer {l}: {nimp.shape[0]} neuron importances for {l1.weight.shape[1]} neurons")
        norder = np.argsort(-nimp, kind="stable")
        _set(l1.weight, l1.weight.numpy()[:, norder])
        if l1.bias is not None:
            _set(l1.bias, l1.bias.numpy()[norder])
        _set(l2.weight, l2.weight.numpy()[norder, :])
    return model


# --------------------------------------------------------------------------- extraction
_LAYER_KEY = re.compile(r"(\.encoder\.layers\.)(\d+)\.")
_SLICEABLE = re.compile(r"\.(self_attn\.(q_proj|k_proj|v_proj|out_proj)|linear1|linear2)\.(weight|bias)$")


def depth_layers(num_layers, depth_mult, flag="--depth_mult_list"):
    """Encoder layers kept at ``depth_mult`` (DynaBERT paper and code): the
    depth is snapped to whole layers, n = round(d * L) >= 1, and layer
    floor(i / d') is kept for i in 0..n-1 with d' = n / L.  d = 0.5 of 12
    layers keeps 0, 2, 4, 6, 8, 10 (PaddleNLP keeps 1, 3, 5, ...)."""
    try:
        d = parse_width(depth_mult) if isinstance(depth_mult, str) else float(depth_mult)
    except ValueError as e:
        raise UserError(f"{flag}: {e}")
    if not 0 < d <= 1:
        raise UserError(f"{flag}: depth {depth_mult} must be in (0, 1]")
    n = int(round(d * num_layers))
    if n < 1:
        raise UserError(f"{flag}: depth {depth_mult} keeps no layer of {num_layers}")
    return [(i * num_layers) // n for i in range(n)]


def extract_subnet(model, width, config, task_type, layers=None):
    """A plain PaddleNLP model holding the sub-network of ``width``.

    ``model``: full-size (reordered) weights -- a plain model, an OFA or its
    network.  The result is ``model_class(task_type)(config)`` resized with
    ``apply_pruned_shapes(heads=[width.heads]*L, ffn=[width.ffn]*L)`` whose
    weights are the leading slices (first heads*head_dim q/k/v columns and
    out_proj rows, first ffn linear1 columns and linear2 rows); every other
    tensor is copied.  Every tensor must find its source (strict).  ``config``
    is deep-copied and records the pruned shapes in its suite info, so
    save_model/load_model rebuild exactly this model.  The stock paddle
    forward of the result equals :func:`forward` of the supernet at ``width``.
    ``layers``: original indices of the encoder layers to keep (depth); the
    result has ``len(layers)`` layers and records them as ``kept_layers``."""
    import paddle
    net = _network(model)
    cfg = copy.deepcopy(config)
    L = int(cfg.num_hidden_layers)
    if len(encoder_layers(net)) != L:
        raise ValueError(f"config has {L} layers, the model {len(encoder_layers(net))}")
    keep = list(range(L)) if layers is None else _check_layers(layers, L)
    L = len(keep)
    cfg.num_hidden_layers = L
    if width.heads > int(cfg.num_attention_heads) or width.ffn > int(cfg.intermediate_size):
        raise ValueError(f"width {width.ratio} ({width.heads} heads, FFN {width.ffn}) exceeds the config")
    info = suite_info(cfg)
    info["heads_per_layer"] = [int(width.heads)] * L
    info["ffn_per_layer"] = [int(width.ffn)] * L
    if layers is not None:
        info["kept_layers"] = [int(i) for i in keep]
    setattr(cfg, SUITE_KEY, info)

    rng = paddle.get_rng_state()
    try:
        sub = model_class(task_type)(cfg)
        apply_pruned_shapes(sub, info["heads_per_layer"], info["ffn_per_layer"])
    finally:
        paddle.set_rng_state(rng)

    src = {_plain_name(k): v for k, v in net.state_dict().items()}
    if layers is not None:  # renumber the kept layers 0..L-1, drop the others
        renamed = {}
        for k, v in src.items():
            m = _LAYER_KEY.search(k)
            if m is None:
                renamed[k] = v
            elif int(m.group(2)) in keep:
                renamed[k[:m.start(2)] + str(keep.index(int(m.group(2)))) + k[m.end(2):]] = v
        src = renamed
    dst = sub.state_dict()
    missing = sorted(set(dst) - set(src))
    extra = sorted(set(src) - set(dst))
    if missing or extra:
        raise RuntimeError(f"extract_subnet: model and {type(sub).__name__} do not match: "
                           f"missing {missing[:3]}, unexpected {extra[:3]}")
    with paddle.no_grad():
        for name, param in dst.items():
            value = src[name].numpy()
            want = list(param.shape)
            if list(value.shape) != want:
                if not _SLICEABLE.search(name) or len(want) != value.ndim or \
                        any(w > s for w, s in zip(want, value.shape)):
                    raise RuntimeError(f"extract_subnet: {name} has shape {list(value.shape)} in the model, "
                                       f"{want} in the sub-network")
                value = value[tuple(slice(0, w) for w in want)]
            param.set_value(np.ascontiguousarray(value))
    if not net.training:
        sub.eval()
    return sub


def param_count(model) -> int:
    """Number of parameter values of ``model``."""
    return int(sum(int(np.prod(p.shape)) for p in model.parameters()))
