"""PaddleSlim supernet plumbing: build a width-elastic OFA supernet from a
plain BERT, select its active sub-network, and every access to PaddleSlim's
``Block`` / ``OFA`` internals (private attributes included) in one place.

The suite never installs the attention monkey patches of
``paddleslim.nas.ofa.utils.nlp_utils`` / ``paddlenlp.transformers.ofa_utils``
(see :mod:`utils.compat`); supernets run through
:func:`utils.elastic_forward.forward`, which calls every sublayer as a module,
so PaddleSlim's ``Block`` wrappers route through ``OFA.layers_forward`` and
pick up the active sub-network from ``ofa.current_config`` (set by
:func:`set_width`).

PaddleSlim's ``SuperLinear`` turns an expand ratio into a size with
``int(expand_ratio * base_output_dim)``; :func:`set_width` hands it, per
layer, the ratio ``(size + 0.5) / base_output_dim`` -- the midpoint of the
wanted integer -- and checks ``int(ratio * base) == size`` with the very same
float expression, so no float error can drop or add a column.

Never call ``ofa(...)`` / ``ofa.model(...)`` at a width < 1: those run
paddle's stock attention, which reshapes with the full ``num_heads``.

Typical use (the modules of the elastic BERT together)::

    widths = snap_widths([1.0, 0.75, 0.5], H, I)                  # utils.widths
    head_imp, neuron_imp = compute_importance(teacher, batches, loss_fn)   # utils.importance
    reorder(teacher, head_imp, neuron_imp)        # before building the supernet
    ofa = build_supernet(teacher, widths)         # copy; teacher stays plain
    set_width(ofa, widths[1]); logits = forward(ofa.model, ids, tt)       # utils.elastic_forward
    small = extract_subnet(ofa.model, widths[2], config, task_type)       # utils.extract
"""
import copy
import sys

from .modeling import encoder_layers, layer_shapes
from .widths import Width, check_layers

# Leaf layers whose output width follows the head count / FFN size.
HEAD_OUT = ("q_proj", "k_proj", "v_proj")
FFN_OUT = ("linear1",)


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


def is_supernet(model):
    """True for an OFA object."""
    return isinstance(model, _ofa_type())


def leaf(layer):
    """The layer holding the weights: ``Block.fn`` for a super layer, else itself."""
    return layer.fn if hasattr(layer, "fn") and isinstance(layer, _block_types()) else layer


def network(model):
    """The Bert* network of an OFA wrapper, or the model itself."""
    import paddle
    if isinstance(model, paddle.DataParallel):
        raise TypeError("pass the unwrapped network (model._layers): calling it directly would skip "
                        "DataParallel's gradient synchronisation; wrap a Layer that calls "
                        "utils.elastic_forward.forward in DataParallel instead")
    if is_supernet(model):
        return model.model
    return model


def supernet_of(net):
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


def full_config(net):
    """The OFA config that runs every Block of ``net`` at full size."""
    return {name: ({"expand_ratio": 1.0} if "expand_ratio" in block.candidate_config else {})
            for name, block in _blocks(net)}


def block_config(layer):
    """(SuperLinear leaf, its active config dict) of a PaddleSlim ``Block``
    around a ``SuperLinear`` -- the config looked up as ``OFA.layers_forward``
    looks it up -- or None for anything else."""
    sup = layer.__dict__.get("supernet")
    ofa_layers = sys.modules.get("paddleslim.nas.ofa.layers")
    fn = leaf(layer)
    if fn is layer or sup is None or ofa_layers is None or type(fn) is not ofa_layers.SuperLinear:
        return None
    config = {}
    current = getattr(sup, "current_config", None)
    if current is not None:
        name = sup._key2name[layer.key]
        skip = sup._skip_layers
        if not layer.fixed and (skip is None or name not in skip) and \
                fn.weight.name not in sup._cannot_changed_layer:
            config = current[name]
    return fn, config


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


def plain_name(name):
    """Parameter name of the plain model: drop the ``fn`` level of Blocks."""
    return ".".join(p for p in name.split(".") if p != "fn")


def _check_teacher(model, widths):
    """Refuse a supernet, a pruned model and widths that are not Width objects
    or exceed the model."""
    if is_supernet(model) or supernet_of(model) is not None:
        raise TypeError("build_supernet needs a plain model (the teacher), not a supernet")
    config = model.config
    heads, ffn = layer_shapes(model)
    if any(h != config.num_attention_heads for h in heads) or any(m != config.intermediate_size for m in ffn):
        raise ValueError("build_supernet needs a full-size model; this one is pruned "
                         f"(heads {heads}, FFN {ffn})")
    for w in widths:
        if not isinstance(w, Width):
            raise TypeError(f"widths must be Width objects from snap_widths, got {w!r}")
        if w.heads > config.num_attention_heads:
            raise ValueError(f"width {w.ratio} has {w.heads} heads but the model only {config.num_attention_heads}")


def _copy_weights(model, net):
    """Copy every tensor of the plain ``model`` into the converted ``net``
    (strict: same names up to the Blocks' ``fn`` level, same shapes)."""
    import paddle
    src = model.state_dict()
    dst = net.state_dict()
    mapped = {plain_name(k): k for k in dst}
    missing = sorted(set(mapped) - set(src))
    extra = sorted(set(src) - set(mapped))
    if missing or extra:
        raise RuntimeError(f"supernet and model do not match: missing {missing[:3]}, unexpected {extra[:3]}")
    with paddle.no_grad():
        for plain, name in mapped.items():
            if list(dst[name].shape) != list(src[plain].shape):
                raise RuntimeError(f"{name}: supernet shape {dst[name].shape} != model shape {src[plain].shape}")
            dst[name].set_value(src[plain])


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

    widths = list(widths)
    _check_teacher(model, widths)
    ratios = sorted({float(w.ratio) for w in widths} | {1.0})
    rng = paddle.get_rng_state()
    try:
        net = type(model)(copy.deepcopy(model.config))
        net = Convert(supernet(expand_ratio=ratios)).convert(net)
    finally:
        paddle.set_rng_state(rng)
    _copy_weights(model, net)   # Convert initialises the super layers afresh
    if model.training:
        net.train()
    else:
        net.eval()

    ofa = OFA(net, elastic_order=["width"])
    net.__dict__["_elastic_ofa"] = ofa        # plain attribute: no sublayer cycle
    ofa.elastic_widths = widths
    set_width(ofa, None)
    return ofa


def set_width(ofa, width, depth_layers=None):
    """Select the active sub-network of ``ofa`` (``width=None``: full width).

    The per-layer config is built BY LAYER NAME: q_proj/k_proj/v_proj get
    ``width.heads * head_dim`` outputs and linear1 ``width.ffn`` outputs in
    every encoder layer; every other Block runs at full size.  (PaddleSlim's
    ``dynabert_config`` guesses positions instead.)  The config is stored as
    ``ofa.current_config`` (what ``Block``s read) and ``ofa.net_config``.
    ``depth_layers``: indices of the encoder layers to run (None = all);
    :func:`utils.elastic_forward.forward` uses them unless given ``layers``
    explicitly."""
    if not is_supernet(ofa):
        raise TypeError("set_width needs the OFA object returned by build_supernet")
    net = ofa.model
    config = full_config(net)
    layers = encoder_layers(net)
    if width is not None:
        for layer in layers:
            prefix = _layer_prefix(net, layer)
            attn = layer.self_attn
            for proj in HEAD_OUT:
                name = f"{prefix}.self_attn.{proj}"
                config[name] = _ratio_config(config, name, getattr(attn, proj), width.heads * attn.head_dim)
            for lin in FFN_OUT:
                name = f"{prefix}.{lin}"
                config[name] = _ratio_config(config, name, getattr(layer, lin), width.ffn)
    if depth_layers is not None:
        depth_layers = check_layers(depth_layers, len(layers))
    select(ofa, config, width, depth_layers)
    return config


def _ratio_config(config, name, block, size):
    if name not in config:
        raise RuntimeError(f"{name} is not an elastic block of the supernet")
    return {"expand_ratio": _exact_ratio(leaf(block), size, name)}


def select(ofa, config, width, depth_layers):
    """Store a selection on ``ofa``: the Blocks' config, the width and the depth."""
    ofa.current_config = config
    ofa.net_config = config
    ofa.elastic_width = width
    ofa.elastic_layers = depth_layers


_SELECTION = ("current_config", "net_config", "elastic_width", "elastic_layers")


def selection(ofa):
    """What :func:`select` stored, for :func:`restore_selection`."""
    return {k: getattr(ofa, k, None) for k in _SELECTION}


def restore_selection(ofa, saved):
    for k, v in saved.items():
        setattr(ofa, k, v)


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
