"""Size report of model directories: shapes, parameters per component,
FLOPs (utils/analysis.py), file sizes and the resident memory of loading the
model in a fresh process (utils/memory.py).  Used by prune.py --analyze and
after every pruning.
"""
import logging
import os

import numpy as np

from . import memory
from .errors import UserError
from .modeling import find_file, layer_shapes, WEIGHT_FILES

logger = logging.getLogger("bert_suite")

COMPONENTS = ("embeddings", "attention", "ffn", "head")


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
PROBE_TAG = "MEMORY_PROBE"
_PROBE = "from utils import model_report as r; r._memory_probe({path!r})"


def _memory_probe(model_dir):
    """Child process: RSS before and after ``load_model`` (printed as JSON)."""
    import gc
    import paddle  # noqa: F401  (imported before the baseline is read)
    from paddlenlp.transformers import BertForSequenceClassification, BertTokenizer  # noqa: F401
    from .modeling import load_model
    gc.collect()
    before, hwm_before = memory.status_kb("VmRSS"), memory.status_kb("VmHWM")
    model, tok, _ = load_model(model_dir)
    gc.collect()
    after, hwm_after = memory.status_kb("VmRSS"), memory.status_kb("VmHWM")
    params = sum(int(np.prod(p.shape)) for p in model.parameters())
    memory.emit(PROBE_TAG, {
        "rss_before_load_mb": before / 1024, "rss_after_load_mb": after / 1024,
        "rss_increase_mb": (after - before) / 1024, "peak_rss_mb": hwm_after / 1024,
        "peak_increase_mb": (hwm_after - hwm_before) / 1024, "param_mb": params * 4 / 2 ** 20})


def measure_load_memory(model_dirs, timeout=600):
    """RSS of loading each model directory, each in a fresh process (run side
    by side): ``rss_increase_mb`` = VmRSS after ``load_model(dir)`` (model +
    tokenizer, after gc) minus VmRSS just before (python, paddle and paddlenlp
    imported); ``peak_rss_mb`` = VmHWM of the process.  Linux only."""
    if not memory.has_status():
        logger.warning("memory not measured: /proc/self/status is not available")
        return [None] * len(model_dirs)
    procs = [memory.start_probe(["-c", _PROBE.format(path=os.path.abspath(d))]) for d in model_dirs]
    out = []
    for d, p in zip(model_dirs, procs):
        res, code, stderr = memory.finish_probe(p, PROBE_TAG, timeout)
        if res is None:
            raise RuntimeError(f"memory probe of {d} failed ({code}): {stderr[-1500:]}")
        out.append(res)
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
