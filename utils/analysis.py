"""Parameter and FLOP counts of a BERT, per component, from its shapes alone.

Components (every LayerNorm is counted with the component it closes):

* ``embeddings``: word + position + token-type tables and their LayerNorm;
* ``attention``: Q, K, V and output projections (+ biases) and the LayerNorm
  after attention, for every layer;
* ``ffn``: both FFN linears (+ biases) and the LayerNorm after the FFN;
* ``head``: pooler (sequence-level tasks) and classifier.

FLOPs are ``2 x multiply-adds`` of one forward pass of ONE example of
``seq_len`` tokens, counting the matrix products only: the Q/K/V projections,
the attention scores (Q K^T) and the weighted sum of the values, the output
projection, both FFN linears, the pooler (one token) and the classifier (one
token, or every token for token classification).  Embedding lookups, biases,
softmax, GELU and LayerNorm are not counted (they are O(seq_len x hidden),
a few per cent of a BERT's time at most).  For batch B multiply by B.

Shapes come from a configuration (``config.json`` of a model directory,
honouring the pruned shapes ``compression_suite.heads_per_layer`` /
``ffn_per_layer``), from a width applied to a full-size configuration
(DynaBERT rule, as :func:`utils.widths.snap_widths`: heads = round(w * H),
FFN = heads * I // H), or from a Paddle static inference program
(:func:`shape_from_static`, used by ``benchmark.py``; either line's format,
read by :mod:`utils.static_program`).

No paddle import is needed except for :func:`shape_from_static`.
"""
import os
from dataclasses import dataclass, field
from typing import List, Optional

from .errors import UserError
from .jsonfile import read_json

COMPONENTS = ("embeddings", "attention", "ffn", "head")
SUITE_KEY = "compression_suite"

BERT_BASE = {"vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
             "intermediate_size": 3072, "max_position_embeddings": 512, "type_vocab_size": 2, "num_labels": 2}
BUILTIN_CONFIGS = {"bert-base": BERT_BASE,
                   "bert-large": dict(BERT_BASE, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                      intermediate_size=4096)}


@dataclass
class BertShape:
    vocab_size: int
    hidden_size: int
    num_attention_heads: int          # of the full model: head_dim = hidden / this
    intermediate_size: int            # of the full model
    heads_per_layer: List[int]
    ffn_per_layer: List[int]
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    num_labels: int = 2
    token_level: bool = False         # token classification: pooler unused, classifier on every token
    unused_pooler: bool = True        # token level: the model holds the pooler's weights anyway (paddlenlp's
                                      # BertForTokenClassification does); a static program has them pruned
    head_dim: Optional[int] = None    # default hidden / num_attention_heads
    name: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.head_dim is None:
            if self.hidden_size % self.num_attention_heads:
                raise UserError(f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads "
                                f"{self.num_attention_heads}")
            self.head_dim = self.hidden_size // self.num_attention_heads
        if len(self.heads_per_layer) != len(self.ffn_per_layer):
            raise UserError(f"heads_per_layer has {len(self.heads_per_layer)} entries, "
                            f"ffn_per_layer {len(self.ffn_per_layer)}")

    @property
    def num_layers(self):
        return len(self.heads_per_layer)

    @property
    def width(self):
        """heads / full heads when every layer keeps the same count, else None."""
        h = set(self.heads_per_layer)
        return (h.pop() / self.num_attention_heads) if len(h) == 1 else None

    def describe(self):
        h, f = sorted(set(self.heads_per_layer)), sorted(set(self.ffn_per_layer))
        hs = str(h[0]) if len(h) == 1 else f"{min(h)}-{max(h)}"
        fs = str(f[0]) if len(f) == 1 else f"{min(f)}-{max(f)}"
        return (f"{self.num_layers} layers, hidden {self.hidden_size}, {hs} heads of {self.head_dim}, FFN {fs}, "
                f"vocab {self.vocab_size}")


# --------------------------------------------------------------------------- building shapes
def _positive_int(cfg, key, source, default=None):
    v = cfg.get(key, default)
    try:
        iv = int(v)
    except (TypeError, ValueError):
        raise UserError(f"{source}: {key} = {v!r} is not an integer")
    if iv != v or iv < 1:
        raise UserError(f"{source}: {key} = {v!r} must be a positive integer")
    return iv


def read_config_file(path):
    """A model config as a plain dict (config.json, or the older
    model_config.json with ``init_args``)."""
    if os.path.isdir(path):
        for name in ("config.json", "model_config.json"):
            if os.path.isfile(os.path.join(path, name)):
                path = os.path.join(path, name)
                break
        else:
            raise UserError(f"{path}: no config.json in this directory")
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such config file")
    raw = read_json(path, want_object=True)
    if "init_args" in raw:
        args = raw["init_args"][0] if raw["init_args"] and isinstance(raw["init_args"][0], dict) else raw
        raw = {k: v for k, v in args.items() if not k.startswith("init_")}
    return raw


def shape_from_config(cfg, source="config", ignore_pruning=False):
    """BertShape of a config dict; pruned shapes recorded under
    ``compression_suite`` are honoured (unless ``ignore_pruning``)."""
    if cfg.get("model_type", "bert") != "bert":
        raise UserError(f"{source}: model_type {cfg.get('model_type')!r} is not a BERT")
    L = _positive_int(cfg, "num_hidden_layers", source)
    H = _positive_int(cfg, "num_attention_heads", source)
    I = _positive_int(cfg, "intermediate_size", source)
    suite = cfg.get(SUITE_KEY) if isinstance(cfg.get(SUITE_KEY), dict) else {}
    heads = suite.get("heads_per_layer") if not ignore_pruning else None
    ffn = suite.get("ffn_per_layer") if not ignore_pruning else None
    heads = [H] * L if heads is None else [int(h) for h in heads]
    ffn = [I] * L if ffn is None else [int(m) for m in ffn]
    if len(heads) != L or len(ffn) != L:
        raise UserError(f"{source}: heads_per_layer/ffn_per_layer have {len(heads)}/{len(ffn)} entries "
                        f"for {L} layers")
    if any(h < 1 or h > H for h in heads) or any(m < 1 for m in ffn):
        raise UserError(f"{source}: heads_per_layer {heads} / ffn_per_layer {ffn} out of range")
    num_labels = cfg.get("num_labels")
    if num_labels is None and isinstance(cfg.get("id2label"), dict):
        num_labels = len(cfg["id2label"])
    task_type = suite.get("task_type", "classification")
    return BertShape(vocab_size=_positive_int(cfg, "vocab_size", source),
                     hidden_size=_positive_int(cfg, "hidden_size", source),
                     num_attention_heads=H, intermediate_size=I, heads_per_layer=heads, ffn_per_layer=ffn,
                     max_position_embeddings=_positive_int(cfg, "max_position_embeddings", source, 512),
                     type_vocab_size=_positive_int(cfg, "type_vocab_size", source, 2),
                     num_labels=int(num_labels or 2), token_level=task_type == "token_classification",
                     name=source)


def builtin_or_file(spec):
    """``--config`` value: a built-in name (bert-base, bert-large) or a JSON file."""
    if spec in BUILTIN_CONFIGS:
        return shape_from_config(BUILTIN_CONFIGS[spec], source=spec)
    if not os.path.exists(spec):
        raise UserError(f"--config {spec}: neither a built-in configuration ({', '.join(BUILTIN_CONFIGS)}) "
                        f"nor an existing JSON file")
    return shape_from_config(read_config_file(spec), source=spec)


def snap(width, num_heads, intermediate_size):
    """(ratio, heads, ffn) of a width: the rule of utils.widths.snap_widths
    (so the shapes here are the ones the training and export scripts build)."""
    from .widths import snap_widths
    w = snap_widths([width], num_heads, intermediate_size, flag="--widths")[0]
    return w.ratio, w.heads, w.ffn


def at_width(shape, width):
    """The shape of the sub-network of width ``width`` of a FULL-size shape."""
    if shape.heads_per_layer != [shape.num_attention_heads] * shape.num_layers or \
            shape.ffn_per_layer != [shape.intermediate_size] * shape.num_layers:
        raise UserError(f"{shape.name}: widths apply to a full-size model; this one is already pruned "
                        f"(heads {shape.heads_per_layer}, FFN {shape.ffn_per_layer})")
    ratio, heads, ffn = snap(width, shape.num_attention_heads, shape.intermediate_size)
    d = dict(shape.__dict__)
    d.update(heads_per_layer=[heads] * shape.num_layers, ffn_per_layer=[ffn] * shape.num_layers,
             extra={"width": ratio, "width_requested": width})
    return BertShape(**d)


# --------------------------------------------------------------------------- counting
def count(shape, seq_len=128, batch=1):
    """{"params": {component: n, "total": n}, "flops": {component: n, "total": n}}
    for one forward of ``batch`` examples of ``seq_len`` tokens."""
    h, s, b = shape.hidden_size, int(seq_len), int(batch)
    if s < 1 or b < 1:
        raise UserError(f"seq_len and batch must be positive, got {s} and {b}")
    ln = 2 * h
    params = dict.fromkeys(COMPONENTS, 0)
    flops = dict.fromkeys(COMPONENTS, 0)
    params["embeddings"] = (shape.vocab_size + shape.max_position_embeddings + shape.type_vocab_size) * h + ln
    for heads, m in zip(shape.heads_per_layer, shape.ffn_per_layer):
        a = heads * shape.head_dim                      # attention inner width
        params["attention"] += 3 * (h * a + a) + (a * h + h) + ln
        flops["attention"] += 2 * b * (3 * s * h * a    # Q, K, V projections
                                       + s * s * a      # scores: heads x (s x hd) @ (hd x s)
                                       + s * s * a      # weighted sum: heads x (s x s) @ (s x hd)
                                       + s * a * h)     # output projection
        params["ffn"] += (h * m + m) + (m * h + h) + ln
        flops["ffn"] += 2 * b * 2 * s * h * m
    c = shape.num_labels
    if shape.token_level:
        params["head"] = h * c + c + ((h * h + h) if shape.unused_pooler else 0)
        flops["head"] = 2 * b * s * h * c
    else:
        params["head"] = (h * h + h) + (h * c + c)
        flops["head"] = 2 * b * (h * h + h * c)
    params["total"] = sum(params[k] for k in COMPONENTS)
    flops["total"] = sum(flops[k] for k in COMPONENTS)
    return {"params": params, "flops": flops}


def flops(shape, seq_len=128, batch=1):
    """Total FLOPs of one forward (see :func:`count`)."""
    return count(shape, seq_len, batch)["flops"]["total"]


def analyze(shape, seq_len=128, reference=None):
    """One row of the analysis table: shapes, counts, and ratios to ``reference``
    (a BertShape, default: this shape at full size)."""
    c = count(shape, seq_len)
    if reference is None:
        reference = BertShape(**dict(shape.__dict__, heads_per_layer=[shape.num_attention_heads] * shape.num_layers,
                                     ffn_per_layer=[shape.intermediate_size] * shape.num_layers, extra={}))
    ref = count(reference, seq_len)
    return {"width": shape.extra.get("width", shape.width), "heads_per_layer": list(shape.heads_per_layer),
            "ffn_per_layer": list(shape.ffn_per_layer), "params": c["params"], "flops": c["flops"],
            "param_ratio": c["params"]["total"] / ref["params"]["total"],
            "flops_ratio": c["flops"]["total"] / ref["flops"]["total"],
            "predicted_speedup": ref["flops"]["total"] / c["flops"]["total"]}


# --------------------------------------------------------------------------- static inference programs
def program_ops(prefix):
    """[(op type, count)] of a static program, most frequent first."""
    from .static_program import op_counts
    return op_counts(prefix)


def shape_from_static(prefix, num_attention_heads=None, intermediate_size=None):
    """Reconstruct the BertShape of a static BERT inference program (as
    ``utils.inference.save_static`` writes it, .pdmodel on paddle 2.6 or a
    PIR .json on paddle 3) from its operators: the three embedding lookups,
    then per encoder layer six weight products (Q, K, V, output, FFN in, FFN
    out) and the head reshape ``[0, 0, heads, head_dim]``, then pooler and
    classifier.  ``num_attention_heads`` / ``intermediate_size`` of the full
    model default to the largest values found (the static graph does not know
    what it was pruned from).  ValueError if the program does not look like that."""
    from .static_program import bert_events
    tables, weights, head_dims = [], [], []
    for kind, what in bert_events(prefix):
        if kind == "lookup":
            tables.append(what)
        elif kind == "product":
            ys, trans, x_rank = what
            k, n = (ys[1], ys[0]) if trans else (ys[0], ys[1])
            weights.append((k, n, x_rank))
        elif len(what) == 4 and what[0] == 0 and what[1] == 0 and what[2] > 0 and what[3] > 0:
            head_dims.append(int(what[3]))
    if len(tables) < 3 or any(t is None or len(t) != 2 for t in tables[:3]):
        raise ValueError(f"{prefix}: expected word, position and token-type embedding lookups, found {tables}")
    if not head_dims or len(set(head_dims)) != 1:
        raise ValueError(f"{prefix}: no consistent attention-head reshape [0, 0, heads, head_dim] found")
    (vocab, hidden), (positions, _), (types, _) = tables[:3]
    hd = head_dims[0]
    seq = [w for w in weights if w[2] == 3]
    tail = [w for w in weights if w[2] != 3]
    token_level = len(seq) % 6 == 1
    if token_level:
        classifier, seq = seq[-1], seq[:-1]
        pooler = None
    else:
        if len(tail) != 2:
            raise ValueError(f"{prefix}: expected pooler and classifier after the encoder, found {len(tail)} products")
        pooler, classifier = tail
    if not seq or len(seq) % 6:
        raise ValueError(f"{prefix}: {len(seq)} weight products in the encoder, not a multiple of 6")
    heads, ffn = [], []
    for i in range(0, len(seq), 6):
        q, k, v, o, f1, f2 = seq[i:i + 6]
        a = q[1]
        ok = (q[0] == k[0] == v[0] == hidden and q[1] == k[1] == v[1] and o == (a, hidden, 3)
              and f1[0] == hidden and f2 == (f1[1], hidden, 3) and a % hd == 0)
        if not ok:
            raise ValueError(f"{prefix}: encoder layer {i // 6} does not have BERT's shapes: {seq[i:i + 6]}")
        heads.append(a // hd)
        ffn.append(f1[1])
    if pooler is not None and pooler[:2] != (hidden, hidden):
        raise ValueError(f"{prefix}: pooler has shape {pooler[:2]}, expected ({hidden}, {hidden})")
    if classifier[0] != hidden:
        raise ValueError(f"{prefix}: classifier has shape {classifier[:2]}")
    H = int(num_attention_heads or max(max(heads), hidden // hd))
    # The full FFN size is not in the graph: assume the DynaBERT rule (FFN shrinks with the heads).
    I = int(intermediate_size or max(round(m * H / k) for k, m in zip(heads, ffn)))
    return BertShape(vocab_size=vocab, hidden_size=hidden, num_attention_heads=H,
                     intermediate_size=I, heads_per_layer=heads, ffn_per_layer=ffn,
                     max_position_embeddings=positions, type_vocab_size=types, num_labels=classifier[1],
                     token_level=token_level, unused_pooler=False, head_dim=hd, name=prefix)


# --------------------------------------------------------------------------- formatting
def fmt_count(n):
    return f"{n:,}"


def format_table(rows, title):
    """Text table: one block per row (width), one line per component."""
    big = max(r["flops"]["total"] for r in rows) >= 1e9
    unit, scale = ("GFLOPs", 1e9) if big else ("MFLOPs", 1e6)
    lines = [title,
             f"{'width':>7} {'heads':>5} {'FFN':>6}  {'component':<11} {'params':>13} {'share':>6} "
             f"{unit:>9} {'share':>6}"]
    for r in rows:
        w = "-" if r["width"] is None else f"{r['width']:.4f}"
        hs, fs = sorted(set(r["heads_per_layer"])), sorted(set(r["ffn_per_layer"]))
        heads = str(hs[0]) if len(hs) == 1 else "mixed"
        ffn = str(fs[0]) if len(fs) == 1 else "mixed"
        pt, ft = r["params"]["total"], r["flops"]["total"]
        for i, comp in enumerate(COMPONENTS + ("total",)):
            label = "pooler+cls" if comp == "head" else comp
            lead = f"{w:>7} {heads:>5} {ffn:>6}" if i == 0 else " " * 20
            lines.append(f"{lead}  {label:<11} {fmt_count(r['params'][comp]):>13} "
                         f"{100 * r['params'][comp] / pt:>5.1f}% {r['flops'][comp] / scale:>9.3f} "
                         f"{100 * r['flops'][comp] / ft:>5.1f}%")
        lines.append(" " * 22 + f"{'vs full':<11} {r['param_ratio']:>12.3f}x {'':>6} {r['flops_ratio']:>8.3f}x "
                     f"  predicted speed-up {r['predicted_speedup']:.3f}x")
    return "\n".join(lines)
