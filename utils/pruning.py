"""Structured one-shot pruning of a fine-tuned BERT (TextPruner's workflow,
written anew for the suite's PaddleNLP models): attention heads and FFN
neurons.

Structured pruning
------------------
Importance decides which heads and FFN neurons stay:

* FFN neurons: always the gradient importance of :func:`utils.importance.compute_importance`
  (per neuron ``|sum_i W1[i,j] dW1[i,j] + b1[j] db1[j]| + |sum_k W2[j,k] dW2[j,k]|``
  summed over the importance batches).
* heads, ``head_score="grad"``: the same pass's ``|d loss / d head_mask[l, h]|``
  summed over the batches (Michel et al. 2019).
* heads, ``head_score="output_proj"``: no data: the Frobenius norm of the
  head's slice of the attention output projection, ``||W_o[h*d:(h+1)*d, :]||_F``
  (Paddle Linear weights are ``[in, out]``, so head ``h``'s context vector
  of size ``d = head_dim`` meets exactly those rows of ``out_proj.weight``;
  the bias is shared by all heads and is not part of any score).

Selection, ``pruning_mode``:

* ``even``: every layer keeps its ``target_num_of_heads`` best heads and
  ``target_ffn_size`` best neurons;
* ``global``: scores are divided by the L2 norm of their layer's (alive)
  scores -- layers of different gradient scale become comparable (Michel et
  al.'s normalisation) -- then every layer keeps its single best head/neuron
  and the remaining ``L * target - L`` places go to the best of all the rest,
  across layers.  Layers end up with different sizes; totals are exact.

``n_iters = K``: the pruning runs in K rounds; round k keeps
``start - (start - target) * k // K`` units (per layer in even mode, in total
in global mode), recomputing the importance on the model as pruned so far.
Between rounds nothing is cut yet: the pruned units of a full-shape working
copy are zeroed (q/k/v columns and biases, out_proj rows of a head; linear1
column and bias, linear2 row of a neuron), which makes the working copy
compute exactly what the cut model computes, and gives the zeroed units zero
importance.  At the end the kept units' weights are sliced out of the model
(original order among the kept ones) and the layers resized with
:func:`utils.modeling.apply_pruned_shapes`, so ``save_model`` records the
per-layer shapes and ``load_model`` rebuilds them strictly.  A model that is
already pruned (layers of different sizes) is padded with dead zero units to
a uniform working shape, so it can be pruned again.

Vocabulary pruning lives in utils/vocab_prune.py, the size/memory report in
utils/model_report.py.
"""
import logging
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np

from .errors import UserError
from .modeling import SUITE_KEY, apply_pruned_shapes, encoder_layers, layer_shapes, suite_info

logger = logging.getLogger("bert_suite")

MODES = ("even", "global")
HEAD_SCORES = ("grad", "output_proj")


# --------------------------------------------------------------------------- configuration
@dataclass
class PruningConfig:
    """What structured pruning aims at (``None`` = that kind is not pruned)."""
    target_num_of_heads: Optional[int] = None   # per layer (even) or per layer on average (global)
    target_ffn_size: Optional[int] = None
    pruning_mode: str = "even"
    n_iters: int = 1
    head_score: str = "grad"

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise UserError(f"pruning config: unknown key(s) {', '.join(sorted(unknown))}")
        return cls(**d)

    @property
    def prunes(self):
        return self.target_num_of_heads is not None or self.target_ffn_size is not None

    def check(self, heads_per_layer, ffn_per_layer):
        """UserError (naming the flag) if the targets cannot be met by a model
        with these per-layer sizes."""
        if self.pruning_mode not in MODES:
            raise UserError(f"--pruning_mode: unknown mode {self.pruning_mode!r}; choose from {', '.join(MODES)}")
        if self.head_score not in HEAD_SCORES:
            raise UserError(f"--head_score: unknown score {self.head_score!r}; choose from {', '.join(HEAD_SCORES)}")
        if int(self.n_iters) < 1:
            raise UserError(f"--n_iters must be >= 1, got {self.n_iters}")
        L = len(heads_per_layer)
        for flag, target, sizes, unit in (("--target_num_of_heads", self.target_num_of_heads, heads_per_layer, "head"),
                                          ("--target_ffn_size", self.target_ffn_size, ffn_per_layer, "FFN neuron")):
            if target is None:
                continue
            if target < 1:
                raise UserError(f"{flag} {target}: every layer must keep at least one {unit}")
            if self.pruning_mode == "even" and target > min(sizes):
                where = f"layer {int(np.argmin(sizes))} has" if len(set(sizes)) > 1 else "the layers have"
                raise UserError(f"{flag} {target}: {where} only {min(sizes)} {unit}s (pruning cannot add {unit}s)")
            if self.pruning_mode == "global" and target * L > sum(sizes):
                raise UserError(f"{flag} {target}: {L} layers x {target} = {target * L} {unit}s, but the model has "
                                f"only {sum(sizes)} (pruning cannot add {unit}s)")


# --------------------------------------------------------------------------- scores and selection
def output_proj_head_scores(model):
    """[L, H] Frobenius norm of each head's rows of ``out_proj.weight``."""
    rows = []
    for layer in encoder_layers(model):
        attn = layer.self_attn
        hd = int(attn.head_dim)
        w = attn.out_proj.weight.numpy().astype(np.float64)
        rows.append(np.sqrt((w.reshape(-1, hd, w.shape[1]) ** 2).sum(axis=(1, 2))))
    return np.stack(rows)


def normalise_by_layer(scores, alive):
    """Each layer's alive scores divided by their L2 norm (dead units -> 0)."""
    out = []
    for s, a in zip(scores, alive):
        s = np.where(a, np.asarray(s, dtype=np.float64), 0.0)
        out.append(s / (np.sqrt((s ** 2).sum()) + 1e-20))
    return out


def _ranked(score, alive):
    """Alive indices, best first (ties: lower index first)."""
    idx = np.flatnonzero(alive)
    return idx[np.argsort(-np.asarray(score, dtype=np.float64)[idx], kind="stable")]


def select_even(scores, alive, keep):
    """New alive masks: the ``keep[l]`` best alive units of each layer."""
    out = []
    for s, a, k in zip(scores, alive, keep):
        m = np.zeros_like(a)
        m[_ranked(s, a)[:k]] = True
        out.append(m)
    return out


def select_global(scores, alive, total):
    """New alive masks keeping ``total`` units over all layers by layer-normalised
    score, at least the best one of every layer."""
    norm = normalise_by_layer(scores, alive)
    out = [np.zeros_like(a) for a in alive]
    rest = []
    for l, (s, a) in enumerate(zip(norm, alive)):
        ranked = _ranked(s, a)
        out[l][ranked[0]] = True
        rest.extend((-s[i], l, int(i)) for i in ranked[1:])
    rest.sort()
    for _, l, i in rest[:max(0, total - len(alive))]:
        out[l][i] = True
    return out


def scheduled(start, target, k, n_iters):
    """Units kept after round ``k`` of ``n_iters`` (linear in units, exact at the end)."""
    return start - (start - target) * k // n_iters


# --------------------------------------------------------------------------- the working copy
def _np(t):
    return t.numpy()


def _set(param, value):
    import paddle
    with paddle.no_grad():
        param.set_value(np.ascontiguousarray(value, dtype=param.numpy().dtype))


def _pad(a, axis, size):
    if a.shape[axis] == size:
        return a.copy()
    width = [(0, 0)] * a.ndim
    width[axis] = (0, size - a.shape[axis])
    return np.pad(a, width)


def working_copy(model, config, task_type):
    """A copy of ``model`` with uniform per-layer shapes (the largest of its
    layers; missing units are zero) and the alive masks of its real units."""
    import copy
    from .extract import build_with_shapes
    heads, ffn = layer_shapes(model)
    L, Hm, Mm = len(heads), max(heads), max(ffn)
    cfg = copy.deepcopy(config)
    info = suite_info(cfg)
    info["heads_per_layer"], info["ffn_per_layer"] = [Hm] * L, [Mm] * L
    setattr(cfg, SUITE_KEY, info)
    work = build_with_shapes(task_type, cfg, info["heads_per_layer"], info["ffn_per_layer"])
    src, dst = model.state_dict(), work.state_dict()
    if set(src) != set(dst):
        raise RuntimeError(f"working copy does not match the model: {sorted(set(src) ^ set(dst))[:3]}")
    for name, param in dst.items():
        value = _np(src[name])
        for axis, (want, have) in enumerate(zip(param.shape, value.shape)):
            if want != have:
                value = _pad(value, axis, want)
        _set(param, value)
    work.eval()
    alive_heads = [np.arange(Hm) < h for h in heads]
    alive_neurons = [np.arange(Mm) < m for m in ffn]
    return work, alive_heads, alive_neurons


def zero_dead_units(work, alive_heads, alive_neurons):
    """Zero the weights of every dead head / neuron of the working copy."""
    for layer, ah, an in zip(encoder_layers(work), alive_heads, alive_neurons):
        attn = layer.self_attn
        hd = int(attn.head_dim)
        cols = np.repeat(~np.asarray(ah), hd)
        for lin in (attn.q_proj, attn.k_proj, attn.v_proj):
            w = _np(lin.weight)
            w[:, cols] = 0
            _set(lin.weight, w)
            if lin.bias is not None:
                b = _np(lin.bias)
                b[cols] = 0
                _set(lin.bias, b)
        w = _np(attn.out_proj.weight)
        w[cols, :] = 0
        _set(attn.out_proj.weight, w)
        dead = ~np.asarray(an)
        w1, b1, w2 = _np(layer.linear1.weight), _np(layer.linear1.bias), _np(layer.linear2.weight)
        w1[:, dead], b1[dead], w2[dead, :] = 0, 0, 0
        _set(layer.linear1.weight, w1)
        _set(layer.linear1.bias, b1)
        _set(layer.linear2.weight, w2)


# --------------------------------------------------------------------------- structured pruning
def structured_prune(model, config, task_type, pconf, batches, loss_fn):
    """Decide which heads and FFN neurons of ``model`` stay (``model`` itself
    is not changed).  ``batches``: list of (input_ids, token_type_ids, labels)
    tensors (may be empty when no gradient importance is needed).

    Returns a dict: ``kept_heads`` / ``kept_neurons`` (per layer, sorted
    indices into the model's heads/neurons), ``rounds`` (sizes after each
    round), ``head_importance`` (last round, [L, H] list) and ``work`` (the
    working copy with the pruned units zeroed: it computes what the cut model
    computes)."""
    from .importance import compute_importance
    heads0, ffn0 = layer_shapes(model)
    pconf.check(heads0, ffn0)
    work, alive_h, alive_n = working_copy(model, config, task_type)
    K = int(pconf.n_iters)
    need_grad = pconf.target_ffn_size is not None or (pconf.target_num_of_heads is not None
                                                       and pconf.head_score == "grad")
    if need_grad and not batches:
        raise UserError("no importance data: gradient importance needs at least one batch")
    rounds, head_scores = [], None
    for k in range(1, K + 1):
        head_grad = neuron_imp = None
        if need_grad:
            head_grad, neuron_imp = compute_importance(work, batches, loss_fn)
        if pconf.target_num_of_heads is not None:
            head_scores = head_grad if pconf.head_score == "grad" else output_proj_head_scores(work)
            head_scores = np.asarray(head_scores, dtype=np.float64)
            N = int(pconf.target_num_of_heads)
            if pconf.pruning_mode == "even":
                alive_h = select_even(head_scores, alive_h, [scheduled(int(h), N, k, K) for h in heads0])
            else:
                alive_h = select_global(head_scores, alive_h, scheduled(sum(heads0), N * len(heads0), k, K))
        if pconf.target_ffn_size is not None:
            M = int(pconf.target_ffn_size)
            if pconf.pruning_mode == "even":
                alive_n = select_even(neuron_imp, alive_n, [scheduled(int(m), M, k, K) for m in ffn0])
            else:
                alive_n = select_global(neuron_imp, alive_n, scheduled(sum(ffn0), M * len(ffn0), k, K))
        zero_dead_units(work, alive_h, alive_n)
        rounds.append({"round": k, "heads_per_layer": [int(a.sum()) for a in alive_h],
                       "ffn_per_layer": [int(a.sum()) for a in alive_n]})
        logger.info("pruning round %d/%d: heads per layer %s, FFN per layer %s", k, K,
                    rounds[-1]["heads_per_layer"], rounds[-1]["ffn_per_layer"])
    kept_heads = [np.flatnonzero(a[:h]).tolist() for a, h in zip(alive_h, heads0)]
    kept_neurons = [np.flatnonzero(a[:m]).tolist() for a, m in zip(alive_n, ffn0)]
    return {"kept_heads": kept_heads, "kept_neurons": kept_neurons, "rounds": rounds,
            "head_importance": None if head_scores is None else head_scores.tolist(), "work": work}


def slice_model(model, kept_heads, kept_neurons):
    """Cut ``model`` down in place to the kept heads / neurons of every layer
    (sorted indices; the original order among them is kept), with the cut
    :func:`utils.extract.cut_layer` that OFA extraction uses."""
    import paddle
    from .extract import cut_layer, set_cut
    layers = encoder_layers(model)
    if len(kept_heads) != len(layers) or len(kept_neurons) != len(layers):
        raise ValueError(f"kept units given for {len(kept_heads)}/{len(kept_neurons)} layers, "
                         f"the model has {len(layers)}")
    cuts = [cut_layer(layer, kh, kn) for layer, kh, kn in zip(layers, kept_heads, kept_neurons)]
    rng = paddle.get_rng_state()
    try:
        apply_pruned_shapes(model, [len(k) for k in kept_heads], [len(k) for k in kept_neurons])
    finally:
        paddle.set_rng_state(rng)
    for layer, cut in zip(layers, cuts):
        set_cut(layer, cut)
    return model

