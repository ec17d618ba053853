"""XLM-R's SentencePiece (unigram) tokenizer, rebuilt from the pieces, scores
and normalisation rules embedded in an E5S1 file (utils/e5s1.py).

The file has no ``.model``; this module writes one with sentencepiece's own
protobuf (``sentencepiece_model_pb2``) in XLM-R's original layout, which is
what Hugging Face's ``XLMRobertaTokenizer`` and fairseq load as
``sentencepiece.bpe.model``:

    SentencePiece id   0 <unk>, 1 <s>, 2 </s>, 3.. the pieces
    model (fairseq) id 0 <s>, 1 <pad>, 2 </s>, 3 <unk>, piece i -> i + 1,
                       and the last id <mask> (not a SentencePiece piece)

The E5S1 file lists its pieces in model-id order (<s>, <pad>, </s>, <unk>,
",", ...; e5.c looks a piece up and feeds its index to the embedding), so the
SentencePiece id of model id ``m >= 4`` is ``m - 1``.

Normalisation: e5.c maps each code point through the embedded table, collapses
runs of spaces and prepends the metaspace "▁".  SentencePiece's own
normaliser does the same from a compiled character map; the map is built by
sentencepiece's trainer from the embedded table (``normalization_rule_tsv``),
so no rule is re-typed here.  Known differences, both outside ordinary text:
SentencePiece strips trailing whitespace (e5.c keeps a "▁" for it), and makes
one <unk> of a run of unknown characters (e5.c one per character).

Vocabulary pruning (``XlmrSpmTokenizer.pruned``) keeps a subset of the
pieces with their scores: the best segmentation of a text whose pieces are
all kept is still the best one (pieces were only removed), so its
tokenization is unchanged, only renumbered.

Public: ``build_model_proto(pieces, scores, special, norm_rules) -> bytes``
and :class:`XlmrSpmTokenizer` (``from_e5s1``, ``from_pretrained``,
``save_pretrained``, ``tokenize``, ``encode``, ``__call__`` as the suite's
``utils.data.encode`` calls it, id conversions, ``vocab`` and ``pruned``
for ``utils.vocab_prune``'s vocabulary pruning).
"""
import io
import json
import os
import tempfile

from .errors import UserError

MODEL_FILE = "sentencepiece.bpe.model"
SPECIALS = {"bos_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>",
            "mask_token": "<mask>", "cls_token": "<s>", "sep_token": "</s>"}
_MODEL_HEAD = ["<s>", "<pad>", "</s>", "<unk>"]      # model ids 0..3
_SPM_HEAD = ["<unk>", "<s>", "</s>"]                 # SentencePiece ids 0..2


def _normalizer_spec(norm_rules):
    """A NormalizerSpec whose compiled character map applies ``norm_rules``
    ({code point: replacement code points}), compiled by sentencepiece."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    with tempfile.TemporaryDirectory(prefix="spm-rules-") as d:
        tsv = os.path.join(d, "rules.tsv")
        with open(tsv, "w", encoding="utf-8") as fh:
            for cp, out in sorted(norm_rules.items()):
                fh.write(f"{cp:X}\t{' '.join(f'{c:X}' for c in out)}\n")
        buf = io.BytesIO()
        # a throw-away character model: only its normaliser is kept
        spm.SentencePieceTrainer.train(sentence_iterator=iter(["ab cd", "ef"]), model_writer=buf,
                                       model_type="char", vocab_size=10, hard_vocab_limit=False,
                                       normalization_rule_tsv=tsv, minloglevel=2)
    tmp = pb.ModelProto()
    tmp.ParseFromString(buf.getvalue())
    spec = pb.NormalizerSpec()
    spec.CopyFrom(tmp.normalizer_spec)
    spec.name = "e5s1_rules"
    spec.add_dummy_prefix = True
    spec.remove_extra_whitespaces = True
    spec.escape_whitespaces = True
    return spec


def build_model_proto(pieces, scores, special, norm_rules, source="E5S1"):
    """Serialized SentencePiece ModelProto (XLM-R layout) from model-id
    ordered ``pieces``/``scores``; ``special`` maps bos/eos/pad/unk to ids."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    want = {"bos": 0, "pad": 1, "eos": 2, "unk": 3}
    if dict(special) != want or list(pieces[:4]) != _MODEL_HEAD or pieces[-1] != "<mask>":
        raise UserError(f"{source}: vocabulary layout is not XLM-R's (<s> <pad> </s> <unk> ... <mask>; got "
                        f"{list(pieces[:4])} ... {pieces[-1]!r}, special ids {dict(special)})")
    body = pieces[4:-1]
    if len(set(body)) != len(body) or "" in body or set(body) & set(_MODEL_HEAD + ["<mask>"]):
        raise UserError(f"{source}: tokenizer pieces are not unique and non-empty")
    m = pb.ModelProto()
    P = pb.ModelProto.SentencePiece
    for name, kind in zip(_SPM_HEAD, (P.UNKNOWN, P.CONTROL, P.CONTROL)):
        m.pieces.add(piece=name, score=0.0, type=kind)
    for p, s in zip(body, scores[4:-1]):
        m.pieces.add(piece=p, score=float(s), type=P.NORMAL)
    t = m.trainer_spec
    t.model_type = pb.TrainerSpec.UNIGRAM
    t.vocab_size = len(m.pieces)
    t.unk_id, t.bos_id, t.eos_id, t.pad_id = 0, 1, 2, -1
    m.normalizer_spec.CopyFrom(_normalizer_spec(norm_rules))
    return m.SerializeToString()


class _Vocab:
    """The two tables of paddlenlp's ``Vocab`` that utils/pruning.py reads."""

    def __init__(self, tokens):
        self.idx_to_token = dict(enumerate(tokens))
        self.token_to_idx = {t: i for i, t in enumerate(tokens)}


class XlmrSpmTokenizer:
    """SentencePiece with XLM-R (fairseq) ids: what multilingual-e5 was trained with."""

    def __init__(self, model_proto, model_max_length=512):
        import sentencepiece as spm
        self.model_proto = bytes(model_proto)
        self.sp = spm.SentencePieceProcessor(model_proto=self.model_proto)
        self.model_max_length = int(model_max_length)
        n = self.sp.get_piece_size()
        self.vocab_size = n + 2          # + <pad> and <mask>, which SentencePiece does not hold
        self.bos_token_id, self.pad_token_id, self.eos_token_id, self.unk_token_id = 0, 1, 2, 3
        self.mask_token_id = n + 1
        self.cls_token_id, self.sep_token_id = self.bos_token_id, self.eos_token_id
        for k, v in SPECIALS.items():
            setattr(self, k, v)
        self.all_special_tokens = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        self._vocab = None

    # ---------------------------------------------------------- construction
    @classmethod
    def from_e5s1(cls, f, model_max_length=512):
        proto = build_model_proto(f.pieces, f.scores, f.special, f.norm_rules, source=f.path)
        tok = cls(proto, model_max_length)
        if tok.vocab_size != len(f.pieces):
            raise RuntimeError(f"rebuilt tokenizer has {tok.vocab_size} ids, the file {len(f.pieces)}")
        return tok

    @classmethod
    def from_pretrained(cls, model_dir):
        path = os.path.join(model_dir, MODEL_FILE)
        if not os.path.isfile(path):
            raise UserError(f"{model_dir}: no {MODEL_FILE} (not a SentencePiece tokenizer directory)")
        max_len = 512
        cfg = os.path.join(model_dir, "tokenizer_config.json")
        if os.path.isfile(cfg):
            with open(cfg, encoding="utf-8") as fh:
                max_len = int(json.load(fh).get("model_max_length", max_len))
        with open(path, "rb") as fh:
            return cls(fh.read(), max_len)

    def save_pretrained(self, out_dir):
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, MODEL_FILE), "wb") as fh:
            fh.write(self.model_proto)
        cfg = dict(SPECIALS, tokenizer_class="XLMRobertaTokenizer", model_max_length=self.model_max_length,
                   do_lower_case=False)
        for name, data in (("tokenizer_config.json", cfg), ("special_tokens_map.json", SPECIALS)):
            with open(os.path.join(out_dir, name), "w", encoding="utf-8") as fh:
                json.dump(data, fh, ensure_ascii=False, indent=2)
        return out_dir

    def __len__(self):
        return self.vocab_size

    # ---------------------------------------------------------------- ids
    def spm_to_model_id(self, i):
        return {0: self.unk_token_id, 1: self.bos_token_id, 2: self.eos_token_id}.get(i, i + 1)

    def model_to_spm_id(self, i):
        special = {self.unk_token_id: 0, self.bos_token_id: 1, self.eos_token_id: 2}
        if i in special:
            return special[i]
        if i == self.pad_token_id or i == self.mask_token_id or not 0 <= i < self.vocab_size:
            return None
        return i - 1

    def tokenize(self, text):
        """The pieces of ``text`` (no <s>/</s>)."""
        return self.sp.encode(text, out_type=str)

    def convert_tokens_to_ids(self, tokens):
        if isinstance(tokens, str):
            return self.spm_to_model_id(self.sp.piece_to_id(tokens))
        return [self.spm_to_model_id(self.sp.piece_to_id(t)) for t in tokens]

    def convert_ids_to_tokens(self, ids):
        def one(i):
            if i == self.pad_token_id:
                return self.pad_token
            if i == self.mask_token_id:
                return self.mask_token
            return self.sp.id_to_piece(self.model_to_spm_id(i))
        return one(ids) if isinstance(ids, int) else [one(i) for i in ids]

    def encode(self, text, max_length=None):
        """Model ids of ``<s> text </s>``, the content cut to ``max_length``."""
        limit = min(max_length or self.model_max_length, self.model_max_length)
        ids = [self.spm_to_model_id(i) for i in self.sp.encode(text)][:max(limit - 2, 0)]
        return [self.bos_token_id] + ids + [self.eos_token_id]

    def _ids(self, text, split_into_words):
        words = text if split_into_words else [text]
        return [self.spm_to_model_id(i) for w in words for i in self.sp.encode(w)]

    def __call__(self, text, text_pair=None, max_length=None, truncation=True, return_token_type_ids=True,
                 is_split_into_words=False):
        """``<s> a </s>`` or ``<s> a </s></s> b </s>`` (XLM-R's pair format; token
        types all 0), truncating the longer text first to ``max_length``;
        ``is_split_into_words``: the texts are lists of words, each tokenized
        on its own."""
        a = self._ids(text, is_split_into_words)
        b = None if text_pair is None else self._ids(text_pair, is_split_into_words)
        limit = min(max_length or self.model_max_length, self.model_max_length)
        budget = max(limit - (2 if b is None else 4), 0)
        if truncation:
            while len(a) + len(b or []) > budget:
                if b is not None and len(b) > len(a):
                    b.pop()
                else:
                    a.pop()
        ids = [self.bos_token_id] + a + [self.eos_token_id]
        if b is not None:
            ids += [self.eos_token_id] + b + [self.eos_token_id]
        out = {"input_ids": ids}
        if return_token_type_ids:
            out["token_type_ids"] = [0] * len(ids)
        return out

    # ------------------------------------------------------ vocabulary pruning
    @property
    def vocab(self):
        """Model id <-> piece tables (paddlenlp ``Vocab`` style), built once."""
        if self._vocab is None:
            self._vocab = _Vocab(self.convert_ids_to_tokens(list(range(self.vocab_size))))
        return self._vocab

    def pruned(self, kept):
        """A tokenizer of the model ids ``kept`` only (sorted old ids; must hold
        <s> <pad> </s> <unk> and <mask>), renumbered 0..len(kept)-1 in order."""
        from sentencepiece import sentencepiece_model_pb2 as pb
        kept = [int(i) for i in kept]
        need = [self.bos_token_id, self.pad_token_id, self.eos_token_id, self.unk_token_id, self.mask_token_id]
        if kept != sorted(set(kept)) or kept[:4] != need[:4] or kept[-1] != self.mask_token_id:
            raise ValueError("kept ids must be sorted, unique and hold ids 0-3 and <mask> (the last id)")
        old = pb.ModelProto()
        old.ParseFromString(self.model_proto)
        new = pb.ModelProto()
        new.CopyFrom(old)
        del new.pieces[:]
        for spm_id in [0, 1, 2] + [self.model_to_spm_id(i) for i in kept[4:-1]]:
            new.pieces.add().CopyFrom(old.pieces[spm_id])
        new.trainer_spec.vocab_size = len(new.pieces)
        tok = XlmrSpmTokenizer(new.SerializeToString(), self.model_max_length)
        if tok.vocab_size != len(kept):
            raise RuntimeError(f"pruned tokenizer has {tok.vocab_size} ids for {len(kept)} kept")
        return tok
