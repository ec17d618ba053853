"""The cut: heads and FFN neurons sliced out of a BERT's encoder layers, ONE
function for both users -- :func:`extract_subnet` (an OFA width/depth: the
leading heads/neurons of a reordered supernet, into a new plain model) and
:func:`utils.pruning.slice_model` (the kept units of structured pruning, in
place).

Typical use::

    small = extract_subnet(ofa.model, widths[2], config, task_type)
"""
import copy
import re

import numpy as np

from .modeling import SUITE_KEY, apply_pruned_shapes, encoder_layers, model_class, suite_info
from .supernet import leaf, network, plain_name
from .widths import check_layers

_LAYER_KEY = re.compile(r"(\.encoder\.layers\.)(\d+)\.")
_SLICEABLE = re.compile(r"\.(self_attn\.(q_proj|k_proj|v_proj|out_proj)|linear1|linear2)\.(weight|bias)$")
_HEAD_LINEARS = ("q_proj", "k_proj", "v_proj")


def cut_layer(layer, kept_heads, kept_neurons):
    """The weights of one encoder layer cut down to ``kept_heads`` /
    ``kept_neurons`` (indices; sorted here, so the original order among them
    is kept): ``{"q_proj": (weight, bias), ..., "out_proj", "linear1",
    "linear2"}`` as numpy arrays.  q/k/v keep the head_dim columns of each
    kept head, out_proj the matching rows; linear1 keeps the kept columns,
    linear2 the kept rows; out_proj's and linear2's biases are whole.
    ``layer`` may be a plain layer or a supernet's (its Blocks' full-size
    weights are cut).  ValueError for an empty, duplicate or out-of-range
    index."""
    attn = layer.self_attn
    hd = int(attn.head_dim)
    kh, kn = np.sort(np.asarray(kept_heads, dtype=np.int64)), np.sort(np.asarray(kept_neurons, dtype=np.int64))
    lin = {name: leaf(getattr(attn, name)) for name in _HEAD_LINEARS + ("out_proj",)}
    lin.update(linear1=leaf(layer.linear1), linear2=leaf(layer.linear2))
    n_heads, n_ffn = int(lin["q_proj"].weight.shape[1]) // hd, int(lin["linear1"].weight.shape[1])
    if len(kh) < 1 or len(kn) < 1 or kh.max() >= n_heads or kn.max() >= n_ffn or \
            len(set(kh.tolist())) != len(kh) or len(set(kn.tolist())) != len(kn):
        raise ValueError(f"bad kept units: heads {kh.tolist()} of {n_heads}, {len(kn)} neurons of {n_ffn}")
    cols = (kh[:, None] * hd + np.arange(hd)[None, :]).reshape(-1)

    def arrays(name, w_index, b_index):
        w, b = lin[name].weight.numpy(), lin[name].bias
        return w[w_index], None if b is None else (b.numpy() if b_index is None else b.numpy()[b_index])

    cut = {name: arrays(name, (slice(None), cols), cols) for name in _HEAD_LINEARS}
    cut["out_proj"] = arrays("out_proj", (cols, slice(None)), None)
    cut["linear1"] = arrays("linear1", (slice(None), kn), kn)
    cut["linear2"] = arrays("linear2", (kn, slice(None)), None)
    return cut


def set_cut(layer, cut):
    """Write :func:`cut_layer`'s arrays into ``layer`` (already resized to them)."""
    import paddle
    with paddle.no_grad():
        for name, (w, b) in cut.items():
            lin = getattr(layer.self_attn, name) if name.endswith("proj") else getattr(layer, name)
            for param, value in ((lin.weight, w), (lin.bias, b)):
                if value is None:
                    continue
                if list(param.shape) != list(value.shape):
                    raise RuntimeError(f"{name}: cut has shape {list(value.shape)}, the layer {list(param.shape)}")
                param.set_value(np.ascontiguousarray(value))


def _subnet_config(config, width, layers):
    """(deep copy of ``config`` recording the cut shapes and kept layers, kept layer indices)."""
    cfg = copy.deepcopy(config)
    L = int(cfg.num_hidden_layers)
    keep = list(range(L)) if layers is None else check_layers(layers, L)
    cfg.num_hidden_layers = len(keep)
    if width.heads > int(cfg.num_attention_heads) or width.ffn > int(cfg.intermediate_size):
        raise ValueError(f"width {width.ratio} ({width.heads} heads, FFN {width.ffn}) exceeds the config")
    info = suite_info(cfg)
    info["heads_per_layer"] = [int(width.heads)] * len(keep)
    info["ffn_per_layer"] = [int(width.ffn)] * len(keep)
    if layers is not None:
        info["kept_layers"] = [int(i) for i in keep]
    setattr(cfg, SUITE_KEY, info)
    return cfg, keep


def _renumbered(state, keep):
    """``state`` with the encoder layers ``keep`` renumbered 0..n-1 and the others dropped."""
    out = {}
    for k, v in state.items():
        m = _LAYER_KEY.search(k)
        if m is None:
            out[k] = v
        elif int(m.group(2)) in keep:
            out[k[:m.start(2)] + str(keep.index(int(m.group(2)))) + k[m.end(2):]] = v
    return out


def extract_subnet(model, width, config, task_type, layers=None):
    """A plain PaddleNLP model holding the sub-network of ``width``.

    ``model``: full-size (reordered) weights -- a plain model, an OFA or its
    network.  The result is ``model_class(task_type)(config)`` resized with
    ``apply_pruned_shapes(heads=[width.heads]*L, ffn=[width.ffn]*L)`` whose
    weights are the leading slices (:func:`cut_layer` of the first heads and
    neurons); every other tensor is copied.  Every tensor must find its
    source (strict).  ``config`` is deep-copied and records the pruned shapes
    in its suite info, so save_model/load_model rebuild exactly this model.
    The stock paddle forward of the result equals the elastic forward of the
    supernet at ``width``.  ``layers``: original indices of the encoder
    layers to keep (depth); the result has ``len(layers)`` layers and records
    them as ``kept_layers``."""
    import paddle
    net = network(model)
    enc = encoder_layers(net)
    if len(enc) != int(config.num_hidden_layers):
        raise ValueError(f"config has {config.num_hidden_layers} layers, the model {len(enc)}")
    cfg, keep = _subnet_config(config, width, layers)
    info = suite_info(cfg)
    sub = build_with_shapes(task_type, cfg, info["heads_per_layer"], info["ffn_per_layer"])

    src = {plain_name(k): v for k, v in net.state_dict().items()}
    if layers is not None:
        src = _renumbered(src, keep)
    dst = sub.state_dict()
    missing = sorted(set(dst) - set(src))
    extra = sorted(set(src) - set(dst))
    if missing or extra:
        raise RuntimeError(f"extract_subnet: model and {type(sub).__name__} do not match: "
                           f"missing {missing[:3]}, unexpected {extra[:3]}")
    with paddle.no_grad():
        for name, param in dst.items():
            if _SLICEABLE.search(name):
                continue
            if list(src[name].shape) != list(param.shape):
                raise RuntimeError(f"extract_subnet: {name} has shape {list(src[name].shape)} in the model, "
                                   f"{list(param.shape)} in the sub-network")
            param.set_value(np.ascontiguousarray(src[name].numpy()))
    for i, orig in enumerate(keep):
        set_cut(encoder_layers(sub)[i], cut_layer(enc[orig], range(width.heads), range(width.ffn)))
    if not net.training:
        sub.eval()
    return sub


def build_with_shapes(task_type, cfg, heads, ffn):
    """A fresh ``task_type`` model of ``cfg`` with ``heads``/``ffn`` per layer,
    built without moving paddle's random state (its initial weights are
    overwritten by the caller, and a cut must not change the dropout masks of
    a training run that makes one)."""
    import paddle
    rng = paddle.get_rng_state()
    try:
        model = model_class(task_type)(cfg)
        apply_pruned_shapes(model, heads, ffn)
    finally:
        paddle.set_rng_state(rng)
    return model


def param_count(model) -> int:
    """Number of parameter values of ``model``."""
    return int(sum(int(np.prod(p.shape)) for p in model.parameters()))
