"""One-shot pruning of a fine-tuned BERT (TextPruner's workflow, written anew
for the suite's PaddleNLP models): structured pruning of attention heads and
FFN neurons, vocabulary pruning, and the parameter / file / memory report.

Structured pruning
------------------
Importance decides which heads and FFN neurons stay:

* FFN neurons: always the gradient importance of :func:`utils.elastic.compute_importance`
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

Vocabulary pruning
------------------
Tokens occurring ``>= min_count`` times in the given texts (tokenised by the
model's own tokenizer), plus every special token and every token a config
``*_token_id`` names, keep their rows of the word-embedding table, in their
original order; ``vocab.txt``, ``vocab_size`` and ``pad_token_id`` (and any
other ``*_token_id``) follow.  Nothing else is re-mapped: BERT classifiers
have no other vocabulary-sized tensor.  Text made only of kept tokens
tokenises to the same tokens, so the pruned model's outputs are unchanged.
"""
import json
import logging
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np

from .errors import UserError
from .modeling import (SUITE_KEY, apply_pruned_shapes, encoder_layers, find_file, layer_shapes, model_class,
                       suite_info, WEIGHT_FILES)

logger = logging.getLogger("bert_suite")

MODES = ("even", "global")
HEAD_SCORES = ("grad", "output_proj")
ALWAYS_KEEP = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
COMPONENTS = ("embeddings", "attention", "ffn", "head")


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
    import paddle
    heads, ffn = layer_shapes(model)
    L, Hm, Mm = len(heads), max(heads), max(ffn)
    cfg = copy.deepcopy(config)
    info = suite_info(cfg)
    info["heads_per_layer"], info["ffn_per_layer"] = [Hm] * L, [Mm] * L
    setattr(cfg, SUITE_KEY, info)
    rng = paddle.get_rng_state()
    try:
        work = model_class(task_type)(cfg)
        apply_pruned_shapes(work, info["heads_per_layer"], info["ffn_per_layer"])
    finally:
        paddle.set_rng_state(rng)
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


# --------------------------------------------------------------------------- vocabulary pruning
def read_texts(paths, column=None, flag="--vocab_texts"):
    """Lines of the text files (``column``: 1-based TAB-separated column)."""
    texts = []
    for path in paths:
        if not os.path.isfile(path):
            raise UserError(f"{flag}: {path} does not exist")
        n = 0
        with open(path, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
                try:
                    line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8").rstrip("\r\n")
                except UnicodeDecodeError as e:
                    raise UserError(f"{path}:{lineno}: not UTF-8 text ({e.reason})") from None
                if not line.strip():
                    continue
                if column is not None:
                    fields = line.split("\t")
                    if len(fields) < column:
                        raise UserError(f"{path}:{lineno}: has {len(fields)} tab-separated column(s), "
                                        f"--vocab_text_column is {column}")
                    line = fields[column - 1]
                texts.append(line)
                n += 1
        if n == 0:
            raise UserError(f"{flag}: {path} holds no text")
    return texts


def count_tokens(tokenizer, texts):
    """{token: occurrences} of the texts tokenised by ``tokenizer``."""
    counts = {}
    for t in texts:
        for tok in tokenizer.tokenize(t):
            counts[tok] = counts.get(tok, 0) + 1
    return counts


def _token_id_fields(config):
    d = config.to_dict() if hasattr(config, "to_dict") else dict(vars(config))
    return {k: v for k, v in d.items() if k.endswith("_token_id") and isinstance(v, int)
            and not isinstance(v, bool)}


def vocabulary_plan(tokenizer, config, counts, min_count):
    """(kept old ids sorted, reasons) for pruning the vocabulary."""
    vocab = tokenizer.vocab
    size = len(vocab.idx_to_token)
    table = int(config.vocab_size)
    if size > table:
        raise UserError(f"the tokenizer has {size} tokens but the word-embedding table only {table} rows")
    if set(vocab.idx_to_token) != set(range(size)):
        raise UserError("vocab.txt maps its tokens to non-contiguous ids (duplicate lines?): cannot prune it")
    if getattr(tokenizer, "added_tokens_encoder", None):
        raise UserError("the tokenizer has added tokens (added_tokens.json); vocabulary pruning does not "
                        "support them")
    to_id = vocab.token_to_idx
    keep = {to_id[t] for t, c in counts.items() if c >= min_count and t in to_id}
    specials = set(getattr(tokenizer, "all_special_tokens", [])) | set(ALWAYS_KEEP)
    keep |= {to_id[t] for t in specials if t in to_id}
    keep |= {v for v in _token_id_fields(config).values() if 0 <= v < size}
    return sorted(keep)


def prune_vocabulary(model, tokenizer, kept, work_dir):
    """Shrink the word embeddings of ``model`` (in place) to the ``kept`` old
    ids, update its config (``vocab_size``, ``pad_token_id`` and any other
    ``*_token_id``) and return (the matching tokenizer, written to
    ``work_dir`` and reloaded from there; old->new id map; changed ids)."""
    import paddle
    import paddle.nn as nn
    kept = np.asarray(kept, dtype=np.int64)
    remap = {int(o): i for i, o in enumerate(kept)}
    bert = model.bert
    old = bert.embeddings.word_embeddings
    table = _np(old.weight)[kept]
    rng = paddle.get_rng_state()
    try:
        new = nn.Embedding(len(kept), table.shape[1])
    finally:
        paddle.set_rng_state(rng)
    _set(new.weight, table)
    bert.embeddings.word_embeddings = new
    changed = {}
    configs = [model.config] + ([bert.config] if getattr(bert, "config", model.config) is not model.config else [])
    for key, v in _token_id_fields(model.config).items():
        if v in remap and remap[v] != v:
            changed[key] = [v, remap[v]]
    for cfg in configs:
        cfg.vocab_size = int(len(kept))
        for key, (_, v) in changed.items():
            setattr(cfg, key, v)
    bert.pad_token_id = model.config.pad_token_id
    config = model.config

    os.makedirs(work_dir, exist_ok=True)
    if hasattr(tokenizer, "pruned"):   # SentencePiece (utils/spm_tokenizer.py) rebuilds its own model
        new_tok = tokenizer.pruned(kept)
        new_tok.save_pretrained(work_dir)
        return new_tok, remap, changed
    # The WordPiece tokenizer: its own files with vocab.txt replaced, reloaded.
    tokenizer.save_pretrained(work_dir)
    tokens = [tokenizer.vocab.idx_to_token[int(i)] for i in kept]
    with open(os.path.join(work_dir, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("".join(t + "\n" for t in tokens))
    new_tok = type(tokenizer).from_pretrained(work_dir)
    if [new_tok.vocab.token_to_idx[t] for t in tokens] != list(range(len(tokens))):
        raise RuntimeError("the pruned vocab.txt does not reload with contiguous ids")
    if new_tok.pad_token_id != config.pad_token_id:
        raise RuntimeError(f"pad id {new_tok.pad_token_id} of the tokenizer != config pad_token_id "
                           f"{config.pad_token_id}")
    return new_tok, remap, changed


# --------------------------------------------------------------------------- reporting
def component_of(name):
    if ".embeddings." in name or name.startswith("embeddings."):
        return "embeddings"
    if ".self_attn." in name or ".norm1." in name:
        return "attention"
    if ".linear1." in name or ".linear2." in name or ".norm2." in name:
        return "ffn"
    if "pooler" in name or name.startswith("classifier"):
        return "head"
    return "other"


def component_params(model):
    """{component: parameter values, ..., "total": n} counted from the
    model's own parameters (components as in utils/analysis.py)."""
    out = dict.fromkeys(COMPONENTS, 0)
    for name, p in model.named_parameters():
        c = component_of(name)
        out[c] = out.get(c, 0) + int(np.prod(p.shape))
    out["total"] = sum(v for k, v in out.items() if k != "total")
    return out


def flops_from_dir(model_dir, seq_len=128):
    """Per-component FLOPs of one example (utils.analysis), or None."""
    try:
        from . import analysis
        shape = analysis.shape_from_config(analysis.read_config_file(model_dir), source=model_dir)
        return analysis.count(shape, seq_len)
    except (ImportError, AttributeError, UserError) as e:  # analysis.py is optional
        logger.warning("FLOPs not counted (utils.analysis: %s)", e)
        return None


def dir_sizes(model_dir):
    weights = find_file(model_dir, WEIGHT_FILES)
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(model_dir) for f in fs)
    vocab = os.path.join(model_dir, "vocab.txt")
    return {"weights_bytes": os.path.getsize(weights) if weights else 0,
            "vocab_bytes": os.path.getsize(vocab) if os.path.isfile(vocab) else 0, "dir_bytes": total}


# --------------------------------------------------------------------------- memory when loaded
_PROBE = ("import sys; sys.path.insert(0, {root!r}); import utils.pruning as p; "
          "p._memory_probe({path!r})")


def _status_kb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def _memory_probe(model_dir):
    """Child process: RSS before and after ``load_model`` (printed as JSON)."""
    import gc
    import paddle  # noqa: F401  (imported before the baseline is read)
    from paddlenlp.transformers import BertForSequenceClassification, BertTokenizer  # noqa: F401
    from .modeling import load_model
    gc.collect()
    before, hwm_before = _status_kb("VmRSS"), _status_kb("VmHWM")
    model, tok, _ = load_model(model_dir)
    gc.collect()
    after, hwm_after = _status_kb("VmRSS"), _status_kb("VmHWM")
    params = sum(int(np.prod(p.shape)) for p in model.parameters())
    print("MEMORY_PROBE " + json.dumps({
        "rss_before_load_mb": before / 1024, "rss_after_load_mb": after / 1024,
        "rss_increase_mb": (after - before) / 1024, "peak_rss_mb": hwm_after / 1024,
        "peak_increase_mb": (hwm_after - hwm_before) / 1024, "param_mb": params * 4 / 2 ** 20}), flush=True)


def measure_load_memory(model_dirs, timeout=600):
    """RSS of loading each model directory, each in a fresh process (run side
    by side): ``rss_increase_mb`` = VmRSS after ``load_model(dir)`` (model +
    tokenizer, after gc) minus VmRSS just before (python, paddle and paddlenlp
    imported); ``peak_rss_mb`` = VmHWM of the process.  Linux only."""
    if not os.path.isfile("/proc/self/status"):
        logger.warning("memory not measured: /proc/self/status is not available")
        return [None] * len(model_dirs)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = [subprocess.Popen([sys.executable, "-c", _PROBE.format(root=root, path=os.path.abspath(d))],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=root)
             for d in model_dirs]
    out = []
    for d, p in zip(model_dirs, procs):
        stdout, stderr = p.communicate(timeout=timeout)
        line = [l for l in stdout.splitlines() if l.startswith("MEMORY_PROBE ")]
        if p.returncode != 0 or not line:
            raise RuntimeError(f"memory probe of {d} failed ({p.returncode}): {stderr[-1500:]}")
        out.append(json.loads(line[-1][len("MEMORY_PROBE "):]))
    return out


def describe(model_dir, model=None, memory=None, seq_len=128):
    """Report of one model directory: shapes, parameters per component,
    FLOPs, file sizes, memory."""
    from .modeling import load_model
    if model is None:
        model, _, _ = load_model(model_dir)
    heads, ffn = layer_shapes(model)
    flops = flops_from_dir(model_dir, seq_len)
    params = component_params(model)
    r = {"dir": os.path.abspath(model_dir), "heads_per_layer": heads, "ffn_per_layer": ffn,
         "vocab_size": int(model.bert.embeddings.word_embeddings.weight.shape[0]), "params": params,
         "flops": None if flops is None else flops["flops"], "seq_len": seq_len, "files": dir_sizes(model_dir),
         "memory": memory}
    if flops is not None and flops["params"]["total"] != params["total"]:
        r["analysis_params_total"] = flops["params"]["total"]
    return r


def _mb(n):
    return f"{n / 2 ** 20:.1f} MB"


def format_report(rows, names):
    """Text table: parameters per component, FLOPs, files and memory per model."""
    lines = [f"{'model':<14} {'heads/layer':<18} {'FFN/layer':<22} {'vocab':>6} " +
             " ".join(f"{c if c != 'head' else 'pooler+cls':>11}" for c in COMPONENTS) +
             f" {'total':>11} {'vs first':>8} {'GFLOPs':>7} {'weights':>9} {'dir':>9} {'+RSS load':>9}"]
    base = rows[0]["params"]["total"]
    for name, r in zip(names, rows):
        hs = ",".join(map(str, r["heads_per_layer"]))
        fs = ",".join(map(str, r["ffn_per_layer"]))
        if len(set(r["ffn_per_layer"])) == 1:
            fs = f"{r['ffn_per_layer'][0]} x{len(r['ffn_per_layer'])}"
        if len(set(r["heads_per_layer"])) == 1:
            hs = f"{r['heads_per_layer'][0]} x{len(r['heads_per_layer'])}"
        fl = "-" if r["flops"] is None else f"{r['flops']['total'] / 1e9:.3f}"
        mem = "-" if not r.get("memory") else f"{r['memory']['rss_increase_mb']:.1f}"
        lines.append(f"{name[:14]:<14} {hs[:18]:<18} {fs[:22]:<22} {r['vocab_size']:>6} " +
                     " ".join(f"{r['params'][c]:>11,}" for c in COMPONENTS) +
                     f" {r['params']['total']:>11,} {r['params']['total'] / base:>7.3f}x {fl:>7} "
                     f"{_mb(r['files']['weights_bytes']):>9} {_mb(r['files']['dir_bytes']):>9} {mem:>9}")
    return "\n".join(lines)
