"""Reading GLUE data (local TSV files or paddlenlp's hub copy) and encoding it.

Reading rules for the TSV files (the GLUE files as distributed):

* a line is split on tab characters only; quote characters are data (GLUE
  sentences start with ``"`` and contain unbalanced quotes, which csv quoting
  would silently merge across lines);
* a header line names the columns, except for headerless files (CoLA), whose
  columns are named by position in ``TaskSpec.columns``; such a file may still
  start with a header naming the needed columns (GLUE's CoLA ``test.tsv`` has
  ``index<TAB>sentence``);
* every row must have as many columns as the header; a bad row, an unknown
  label, a score that is not a number or a blank line before the end is a
  :class:`UserError` naming ``file:line`` (1-based file lines, header included);
* a UTF-8 BOM, Windows line ends and blank lines at the end are tolerated.

``labelled=False`` reads files without a label column (GLUE ``test.tsv``:
``index`` + the text columns); the examples then carry ``label=None``.

Own data (``--train_file`` ...; a TaskSpec from :func:`resolve_task`) follows
the same rules, with the file type chosen by the extension: ``.tsv`` as above,
``.csv`` through the csv module (RFC 4180: fields with commas, quotes or line
breaks are quoted, ``""`` is a quote; malformed quoting is an error naming the
line).  A header row naming the columns is required; the label column may be
absent from a test file (it is then read unlabelled).  Multilabel cells hold
the labels joined by the task's delimiter (``pos,x``; an empty cell = no label)
and become multi-hot tuples.
"""
import csv
import io
import logging
import os
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

from .batching import encode_pair, pad_features
from .errors import UserError
from .tasks import TaskSpec, get_task, own_files, own_task

logger = logging.getLogger("bert_suite")

_BOM = b"\xef\xbb\xbf"


@dataclass
class Example:
    text_a: str
    text_b: Optional[str]
    label: Union[int, float, tuple, None]   # class index, float score, multi-hot tuple, or None (unlabelled)


# ----------------------------------------------------------------- labels
def parse_label(value, task: TaskSpec, where: str):
    """Turn a label as written in a file (or a hub record) into a class index
    (classification) or a float (regression).  ``where`` prefixes the error."""
    if task.is_regression:
        try:
            score = float(str(value).strip())
        except ValueError:
            score = None
        if score is None or not np.isfinite(score):
            raise UserError(f"{where}: score '{value}' is not a number")
        return score
    if task.multilabel:
        hot = [0.0] * len(task.labels)
        for name in split_labels(value, task.label_delimiter):
            if name not in task.labels:
                allowed = ", ".join(f"'{x}'" for x in task.labels)
                raise UserError(f"{where}: label '{name}' is not one of {allowed}")
            hot[task.labels.index(name)] = 1.0
        return tuple(hot)
    text = str(value).strip()
    try:
        return task.labels.index(text)
    except ValueError:
        allowed = ", ".join(f"'{x}'" for x in task.labels)
        raise UserError(f"{where}: label '{value}' is not one of {allowed}") from None


def split_labels(value, delimiter):
    """The labels of one multilabel cell: split on ``delimiter``, stripped,
    empty parts dropped (an empty cell is an example with no label)."""
    return [x.strip() for x in str(value).split(delimiter) if x.strip()]


# ----------------------------------------------------------------- local files
def is_csv(path) -> bool:
    return str(path).lower().endswith(".csv")


def _lines(path):
    """Yield (lineno, text) for each line, split on '\\n' only (a stray '\\r'
    inside a field stays data), with the line end and a leading BOM removed."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if lineno == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM):]
            if raw.endswith(b"\n"):
                raw = raw[:-1]
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise UserError(f"{path}:{lineno}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _csv_records(path):
    """Yield (lineno, fields) for each CSV record (``lineno``: its first line)."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw.startswith(_BOM):
        raw = raw[len(_BOM):]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise UserError(f"{path}:{line}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    start = 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise UserError(f"{path}:{start}: malformed CSV ({e}; quote a field that holds commas, quotes "
                            f"or line breaks, and write a quote inside it as \"\")") from None
        yield start, fields
        start = reader.line_num + 1


def _records(path):
    """Yield (lineno, fields) for each line (TSV) or record (CSV); fields is
    None for a blank line."""
    if is_csv(path):
        for lineno, fields in _csv_records(path):
            blank = not fields or (len(fields) == 1 and not fields[0].strip())
            yield lineno, None if blank else fields
    else:
        for lineno, line in _lines(path):
            yield lineno, line.split("\t") if line.strip() else None


def _needed_columns(task: TaskSpec, labelled: bool):
    cols = [task.text_a]
    if task.text_b is not None:
        cols.append(task.text_b)
    if labelled:
        cols.append(task.label)
    return cols


def _table_rows(path, task: TaskSpec, labelled=True):
    """Yield (lineno, text_a, text_b, label cell or None) for each data row of
    ``path``, after checking the header and every row's column count.
    ``labelled=None``: labelled iff the header names the label column."""
    path = str(path)
    if not os.path.isfile(path):
        raise UserError(f"{path}: file not found")
    sep = "comma" if is_csv(path) else "tab"
    names = None        # column names of the file
    idx = None          # positions of text_a, text_b, label
    blank_at = None     # first blank line seen (allowed only at the end)
    rows = 0
    for lineno, fields in _records(path):
        if fields is None:
            if blank_at is None:
                blank_at = lineno
            continue
        if blank_at is not None:
            raise UserError(f"{path}:{blank_at}: empty line (blank lines are allowed only at the end of the file)")
        if names is None:
            if labelled is None:
                labelled = task.label in fields
            needed = _needed_columns(task, labelled)
            is_header = task.columns is None or all(c in fields for c in needed)
            if is_header:
                missing = [c for c in needed if c not in fields]
                if missing:
                    hint = " (set --text_column, --text_pair_column, --label_column)" if task.is_own_data else ""
                    raise UserError(
                        f"{path}:{lineno}: header lacks column(s) {', '.join(repr(c) for c in missing)} "
                        f"needed for {task.name}{hint} (header: {', '.join(repr(c) for c in fields)})")
                names = fields
            else:
                names = list(task.columns)
            idx = [names.index(c) for c in needed]
            if is_header:
                continue
        if len(fields) != len(names):
            raise UserError(f"{path}:{lineno}: expected {len(names)} {sep}-separated columns, found {len(fields)}")
        rows += 1
        yield (lineno, fields[idx[0]], fields[idx[1]] if task.text_b is not None else None,
               fields[idx[-1]] if labelled else None)
    if names is None:
        raise UserError(f"{path}: empty file (expected {task.name} data)")
    if not rows:
        raise UserError(f"{path}: no examples (only a header)")


def read_glue_file(path, task: TaskSpec, labelled=True) -> list:
    """Read one data file of ``task`` (a GLUE TSV file, or an own TSV/CSV
    file) into a list of :class:`Example`.  ``labelled=None``: read the labels
    if the header names the label column."""
    return [Example(a, b, None if cell is None else parse_label(cell, task, f"{path}:{lineno}"))
            for lineno, a, b, cell in _table_rows(path, task, labelled)]


def infer_label_list(path, task: TaskSpec) -> list:
    """The label strings found in the label column of ``path``, sorted
    (multilabel: every label of every cell)."""
    seen = set()
    for lineno, _, _, cell in _table_rows(path, task, labelled=True):
        if task.multilabel:
            seen.update(split_labels(cell, task.label_delimiter))
        elif cell.strip():
            seen.add(cell.strip())
        else:
            raise UserError(f"{path}:{lineno}: empty label in column '{task.label}'")
    need = 1 if task.multilabel else 2
    if len(seen) < need:
        raise UserError(f"{path}: the label column '{task.label}' holds {len(seen)} distinct label(s) "
                        f"({', '.join(sorted(seen)) or 'none'}); {task.task_type} needs at least {need} "
                        f"(or give --label_list)")
    return sorted(seen)


def resolve_task(args, known_labels=None) -> TaskSpec:
    """The task the flags name (see ``tasks.add_task_args``): a GLUE task,
    or own data.  The own label list is ``--label_list``, else
    ``known_labels`` (the teacher's), else the sorted labels of
    ``--train_file`` (said in the log)."""
    if args.task_name:
        return get_task(args.task_name)
    columns = (args.text_column, args.text_pair_column, args.label_column)
    labels = None
    if args.task_type != "regression":
        if args.label_list:
            labels = list(args.label_list)
        elif known_labels:
            labels = list(known_labels)
            logger.info("label list (from the model): %s", ", ".join(labels))
        else:
            probe = own_task(args.task_type, *columns, labels=(), label_delimiter=args.label_delimiter,
                             files=own_files(args))
            labels = infer_label_list(args.train_file, probe)
            logger.info("label list inferred from %s (sorted; --label_list sets it): %s", args.train_file,
                        ", ".join(labels))
    return own_task(args.task_type, *columns, labels=labels, label_delimiter=args.label_delimiter,
                    files=own_files(args))


def _task_dirs(task: TaskSpec, data_dir: str):
    """Directories that may hold the task's files, most specific first:
    data_dir/SST-2, data_dir/sst-2, data_dir/SST2, data_dir/sst2, data_dir."""
    names = []
    for n in (task.name, task.name.lower(), task.name.replace("-", ""), task.name.replace("-", "").lower(),
              task.hub_name):
        if n and n not in names:
            names.append(n)
    return [os.path.join(data_dir, n) for n in names] + [data_dir]


def find_split_file(task: TaskSpec, data_dir: str, split: str) -> str:
    """Path of ``<split>.tsv`` of ``task`` under ``data_dir`` (see :func:`_task_dirs`)."""
    if not os.path.isdir(data_dir):
        raise UserError(f"--data_dir: '{data_dir}' is not a directory")
    tried = [os.path.join(d, f"{split}.tsv") for d in _task_dirs(task, data_dir)]
    for p in tried:
        if os.path.isfile(p):
            return p
    raise UserError(f"{tried[0]}: file not found (also looked for {', '.join(tried[1:])})")


def is_labelled_split(split: str) -> bool:
    """GLUE test files carry no labels; every other split does."""
    return not split.startswith("test")


# ----------------------------------------------------------------- hub copy
def example_from_hub(record: dict, task: TaskSpec, where: str = "hub example") -> Example:
    """Convert one example of paddlenlp's ``load_dataset('glue', ...)`` into an
    :class:`Example`.  paddlenlp yields ``{"sentence", "labels"}`` for
    single-sentence tasks and ``{"sentence1", "sentence2", "labels"}`` for
    pairs; ``labels`` is already a class index for classification (paddlenlp
    maps the strings with the same label order as ``task.labels``), a string
    such as ``"3.800"`` for STS-B, and absent for test splits."""
    if task.text_b is None:
        text_a, text_b = record["sentence"], None
    else:
        text_a, text_b = record["sentence1"], record["sentence2"]
    value = record.get("labels", record.get("label"))
    if value is None:
        label = None
    elif not task.is_regression and isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if not 0 <= int(value) < task.num_labels:
            raise UserError(f"{where}: label index {value} out of range for {task.name}")
        label = int(value)
    else:
        label = parse_label(value, task, where)
    return Example(text_a, text_b, label)


def _load_from_hub(task: TaskSpec, split: str) -> list:
    from paddlenlp.datasets import load_dataset   # online users only; heavy import
    known = ("train",) + tuple(task.dev_splits) + tuple(task.test_splits)
    if split not in known:
        raise UserError(f"split '{split}' does not exist for {task.name} on the hub; choose from {', '.join(known)}")
    ds = load_dataset("glue", task.hub_name, splits=split)
    return [example_from_hub(r, task, f"glue/{task.hub_name}/{split} example {i}") for i, r in enumerate(ds)]


def load_glue(task: TaskSpec, data_dir: Optional[str], splits) -> dict:
    """Load ``splits`` of ``task``: from ``data_dir`` if given (``data_dir/TASK/<split>.tsv``
    or ``data_dir/<split>.tsv``), else from paddlenlp's hub copy (needs network).
    Splits starting with "test" are read without labels."""
    if isinstance(splits, str):
        splits = [splits]
    out = {}
    for split in splits:
        if task.is_own_data:
            path = task.file(split)
            if path is None:
                raise UserError(f"own data: no --{split}_file given")
            out[split] = read_glue_file(path, task, labelled=None if split.startswith("test") else True)
        elif data_dir:
            out[split] = read_glue_file(find_split_file(task, data_dir, split), task,
                                        labelled=is_labelled_split(split))
        else:
            out[split] = _load_from_hub(task, split)
    return out


# ----------------------------------------------------------------- encoding
def encode(examples, tokenizer, max_seq_length) -> list:
    """Tokenize examples into ``{"input_ids", "token_type_ids", "label"}`` dicts
    (the tokenizer's framing: [CLS] a [SEP] (b [SEP]) for BERT, <s> a </s> ...
    for XLM-R; truncated to ``max_seq_length`` tokens, no padding).
    ``tokenizer`` is a paddlenlp (or Hugging Face style) tokenizer."""
    if int(max_seq_length) < 3:
        raise UserError(f"--max_seq_length: must be at least 3, got {max_seq_length}")
    return [dict(encode_pair(tokenizer, ex.text_a, ex.text_b, max_seq_length), label=ex.label) for ex in examples]


def collate(features, pad_token_id, is_regression, multilabel=False):
    """Pad a batch to its longest sequence with the tokenizer's ``pad_token_id``.
    Returns ``(input_ids, token_type_ids, labels)`` as numpy arrays: int64
    ``[B, T]``, int64 ``[B, T]``, and labels float32 ``[B]`` (regression),
    float32 multi-hot ``[B, C]`` (multilabel) or int64 ``[B]``; ``labels`` is
    None when the batch is unlabelled."""
    if not features:
        raise ValueError("collate: empty batch")
    ids, types = pad_features(features, pad_token_id)
    raw = [f.get("label") for f in features]
    if all(x is None for x in raw):
        labels = None
    elif any(x is None for x in raw):
        raise ValueError("collate: batch mixes labelled and unlabelled features")
    else:
        labels = np.asarray(raw, dtype=np.float32 if (is_regression or multilabel) else np.int64)
        if multilabel and labels.ndim != 2:
            raise ValueError("collate: multilabel labels must be multi-hot rows of equal length")
    return ids, types, labels


class Batcher:
    """``collate`` bound to a pad id and a task kind; usable as a DataLoader
    ``collate_fn`` or called directly on a list of features."""

    def __init__(self, pad_token_id, is_regression, multilabel=False):
        self.pad_token_id = pad_token_id
        self.is_regression = is_regression
        self.multilabel = multilabel

    @classmethod
    def for_task(cls, task: TaskSpec, pad_token_id):
        return cls(pad_token_id, task.is_regression, task.multilabel)

    def __call__(self, features):
        return collate(features, self.pad_token_id, self.is_regression, self.multilabel)
