"""GLUE task facts, in one table.

Every fact a script needs about a task -- which columns hold the texts and the
label, the label strings, the metric, which splits are the dev sets -- lives in
``GLUE_TASKS`` below.  Code looks the task up with :func:`get_task` and reads
the fields; nothing elsewhere branches on the task name.

Column names are the ones in the header lines of the GLUE files as distributed
(``data_dir/TASK/{train,dev,test}.tsv``).  CoLA's train/dev files have no
header, so its columns are named by position in ``columns``.

Label order: the order of paddlenlp's own GLUE builder
(``paddlenlp/datasets/glue.py``, ``BUILDER_CONFIGS[name]["labels"]``), so a
model fine-tuned on the hub data (``load_dataset('glue', ...)``) and one
fine-tuned on local files use the same class indices:

* CoLA, SST-2, MRPC, QQP: ``("0", "1")``
* MNLI: ``("contradiction", "entailment", "neutral")``
* QNLI, RTE: ``("entailment", "not_entailment")``
* STS-B: regression (``labels=None``), one output.

Own data (any TSV or CSV file with a header naming its columns) gets a
TaskSpec built from the command line by :func:`own_task`; its facts -- task
type, metric, label list, columns, delimiter -- are those of the table below,
``OWN_DATA_METRICS``, and the flags (see :func:`add_task_args`).

The flags of the NER scripts (:func:`add_ner_args`) are defined here too, so
every stage's data flags are read in one place.
"""
import argparse
import os
from dataclasses import dataclass
from typing import Optional

from .errors import UserError
from .ner_data import TASK_NAME as NER_TASK, parse_label_list


@dataclass(frozen=True)
class TaskSpec:
    name: str                    # canonical name, e.g. "SST-2"
    text_a: str                  # column holding the first text
    text_b: Optional[str]        # column holding the second text; None = single sentence
    label: str                   # column holding the label
    labels: Optional[tuple]      # label strings as in the files; None = regression
    metric: str                  # "acc" | "mcc" | "acc_and_f1" | "pearson_and_spearman" | "acc_and_macro_f1"
    #                              | "multilabel"  (see utils/metrics.py)
    dev_splits: tuple            # ("dev",) or ("dev_matched", "dev_mismatched")
    columns: Optional[tuple] = None   # headerless files: column names by position
    hub_name: str = ""           # name for paddlenlp load_dataset('glue', hub_name)
    test_splits: tuple = ("test",)    # unlabelled GLUE test files
    multilabel: bool = False     # label cell = labels joined by label_delimiter; multi-hot targets, sigmoid + BCE
    label_delimiter: str = ","   # multilabel only
    files: tuple = ()            # own data: ((split, path), ...); empty for GLUE (files found under --data_dir)

    @property
    def is_regression(self) -> bool:
        return self.labels is None

    @property
    def task_type(self) -> str:
        """The model's task type as recorded in config.json (utils/modeling.py)."""
        if self.multilabel:
            return "multilabel"
        return "regression" if self.labels is None else "classification"

    @property
    def is_own_data(self) -> bool:
        return bool(self.files)

    def file(self, split) -> Optional[str]:
        """Own data: the file of ``split`` (None if not given)."""
        return dict(self.files).get(split)

    def own_data_info(self) -> Optional[dict]:
        """What export and predict need to read own files again (None for GLUE)."""
        if not self.is_own_data:
            return None
        return {"text_column": self.text_a, "text_pair_column": self.text_b, "label_column": self.label,
                "label_delimiter": self.label_delimiter}

    def suite_info(self) -> dict:
        """The task part of ``config.json['compression_suite']``."""
        info = {"task_type": self.task_type, "task_name": self.name, "label_list": list(self.labels or [])}
        if self.is_own_data:
            info["own_data"] = self.own_data_info()
        return info

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)

    @property
    def is_pair(self) -> bool:
        return self.text_b is not None


_BINARY = ("0", "1")
_NLI2 = ("entailment", "not_entailment")

_TABLE = (
    TaskSpec("CoLA", text_a="sentence", text_b=None, label="label", labels=_BINARY,
             metric="mcc", dev_splits=("dev",),
             columns=("source", "label", "judgement", "sentence"), hub_name="cola"),
    TaskSpec("SST-2", text_a="sentence", text_b=None, label="label", labels=_BINARY,
             metric="acc", dev_splits=("dev",), hub_name="sst-2"),
    TaskSpec("MRPC", text_a="#1 String", text_b="#2 String", label="Quality", labels=_BINARY,
             metric="acc_and_f1", dev_splits=("dev",), hub_name="mrpc"),
    TaskSpec("STS-B", text_a="sentence1", text_b="sentence2", label="score", labels=None,
             metric="pearson_and_spearman", dev_splits=("dev",), hub_name="sts-b"),
    TaskSpec("QQP", text_a="question1", text_b="question2", label="is_duplicate", labels=_BINARY,
             metric="acc_and_f1", dev_splits=("dev",), hub_name="qqp"),
    TaskSpec("MNLI", text_a="sentence1", text_b="sentence2", label="gold_label",
             labels=("contradiction", "entailment", "neutral"), metric="acc",
             dev_splits=("dev_matched", "dev_mismatched"), hub_name="mnli",
             test_splits=("test_matched", "test_mismatched")),
    TaskSpec("QNLI", text_a="question", text_b="sentence", label="label", labels=_NLI2,
             metric="acc", dev_splits=("dev",), hub_name="qnli"),
    TaskSpec("RTE", text_a="sentence1", text_b="sentence2", label="label", labels=_NLI2,
             metric="acc", dev_splits=("dev",), hub_name="rte"),
)

GLUE_TASKS = {t.name: t for t in _TABLE}


def _key(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch not in "-_ ")


_BY_KEY = {_key(t.name): t for t in _TABLE}


def get_task(name: str) -> TaskSpec:
    """Look a task up by name, ignoring case, '-', '_' and spaces
    ("sst-2", "SST2", "sts_b", "mnli" ...).  Unknown -> UserError."""
    spec = _BY_KEY.get(_key(str(name)))
    if spec is None:
        raise UserError(f"--task_name: unknown task '{name}'; choose from {', '.join(GLUE_TASKS)}")
    return spec


# --------------------------------------------------------------------------- own data
OWN_DATA = "own data"   # task_name recorded in models trained on own files
OWN_DATA_METRICS = {    # task type -> metric (utils/metrics.py); main score in brackets
    "classification": "acc_and_macro_f1",     # acc, macro_f1            [acc]
    "regression": "pearson_and_spearman",     # pearson, spearman, corr  [corr, as STS-B]
    "multilabel": "multilabel",               # micro_f1, macro_f1, one_minus_mlogloss  [micro_f1]
}
FILE_TYPES = (".tsv", ".csv")   # TSV: split on tabs, quotes are data; CSV: RFC 4180 quoting (csv module)
OWN_FILE_FLAGS = ("train_file", "dev_file", "test_file")
OWN_DATA_FLAGS = OWN_FILE_FLAGS + ("text_column", "text_pair_column", "label_column", "task_type", "label_list",
                                   "label_delimiter")
OWN_DATA_DEFAULTS = {"text_column": "text", "label_column": "label", "task_type": "classification",
                     "label_delimiter": ","}


def own_task(task_type, text_column, text_pair_column, label_column, labels, label_delimiter=",", files=()):
    """The TaskSpec of own data.  ``labels``: label strings (class index =
    position) for classification and multilabel, None for regression;
    ``files``: ((split, path), ...)."""
    if task_type not in OWN_DATA_METRICS:
        raise UserError(f"--task_type: unknown type '{task_type}'; choose from {', '.join(OWN_DATA_METRICS)}")
    regression = task_type == "regression"
    return TaskSpec(OWN_DATA, text_a=text_column, text_b=text_pair_column or None, label=label_column,
                    labels=None if regression else tuple(labels or ()), metric=OWN_DATA_METRICS[task_type],
                    dev_splits=("dev",), test_splits=("test",), multilabel=task_type == "multilabel",
                    label_delimiter=label_delimiter, files=tuple(files))


def own_task_from_info(info, files=()):
    """The own-data TaskSpec a saved model records (``compression_suite``), or None."""
    own = info.get("own_data")
    if not own:
        return None
    labels = info.get("label_list") or None
    return own_task(info.get("task_type", "classification"), own["text_column"], own.get("text_pair_column"),
                    own["label_column"], labels, own.get("label_delimiter", ","), files)


def add_task_args(p, test_file_help="optional: a test file (scored once at the end if it has the label column)"):
    """The flags that choose the task: a GLUE task, or own data files."""
    g = p.add_argument_group("GLUE task (or own data, below)")
    g.add_argument("--task_name", default=None, help="one of: " + ", ".join(GLUE_TASKS))
    g.add_argument("--data_dir", default=None,
                   help="directory with the GLUE files (DIR/TASK/train.tsv, dev.tsv); default: paddlenlp's hub copy")
    o = p.add_argument_group("own data: TSV or CSV files (by extension) whose header row names the columns")
    o.add_argument("--train_file", default=None, help="training data (.tsv or .csv)")
    o.add_argument("--dev_file", default=None, help="dev data: selects the best model")
    o.add_argument("--test_file", default=None, help=test_file_help)
    o.add_argument("--text_column", default=None, help="column of the text (default: text)")
    o.add_argument("--text_pair_column", default=None, help="column of the second text of a pair (default: none)")
    o.add_argument("--label_column", default=None, help="column of the label (default: label)")
    o.add_argument("--task_type", default=None, choices=list(OWN_DATA_METRICS),
                   help="classification (softmax; acc, macro F1), regression (one output, MSE; Pearson/Spearman), "
                        "multilabel (sigmoid + binary cross-entropy; micro/macro F1, 1 - mlogloss); "
                        "default: classification")
    o.add_argument("--label_list", nargs="+", default=None,
                   help="the labels in class order (default: the labels of --train_file, sorted)")
    o.add_argument("--label_delimiter", default=None,
                   help="multilabel: separates the labels of one example in the label column (default: ',')")
    return p


def check_task_args(args, need=("train_file", "dev_file")):
    """Flag sanity, before any file or model is read: --task_name or own
    data, not both; own files are .tsv/.csv; own-data defaults filled in."""
    given = [f for f in OWN_DATA_FLAGS if getattr(args, f, None) is not None]
    if args.task_name and given:
        raise UserError(f"--task_name and own data (--{', --'.join(given)}) are mutually exclusive: give a GLUE task "
                        f"or your own files, not both")
    if args.task_name:
        get_task(args.task_name)
        return args
    if not given:
        raise UserError("give --task_name (a GLUE task: " + ", ".join(GLUE_TASKS) + ") or your own data "
                        "(--train_file and --dev_file, TSV or CSV with a header row)")
    if getattr(args, "data_dir", None):
        raise UserError("--data_dir is for GLUE tasks (--task_name); own data is given with --train_file/--dev_file")
    for f in need:
        if getattr(args, f, None) is None:
            raise UserError(f"own data needs --{f}")
    for k, v in OWN_DATA_DEFAULTS.items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    for f in OWN_FILE_FLAGS:
        path = getattr(args, f, None)
        if path is not None and os.path.splitext(path)[1].lower() not in FILE_TYPES:
            raise UserError(f"--{f}: {path}: unknown file type (expected a .tsv or .csv file with a header row)")
    if args.task_type != "multilabel" and args.label_delimiter != OWN_DATA_DEFAULTS["label_delimiter"]:
        raise UserError(f"--label_delimiter is for --task_type multilabel (got --task_type {args.task_type})")
    if not args.label_delimiter:
        raise UserError("--label_delimiter must not be empty")
    if args.task_type == "regression" and args.label_list:
        raise UserError("--label_list is for classification and multilabel, not regression")
    cols = [args.text_column, args.text_pair_column, args.label_column]
    for name, col in zip(("text_column", "text_pair_column", "label_column"), cols):
        if col is not None and not col.strip():
            raise UserError(f"--{name} must not be empty")
    named = [c for c in cols if c is not None]
    if len(set(named)) != len(named):
        raise UserError(f"--text_column, --text_pair_column and --label_column must name different columns "
                        f"(got {', '.join(repr(c) for c in named)})")
    if args.label_list is not None:
        args.label_list = check_label_list(args.label_list, args.task_type, args.label_delimiter)
    return args


class _NerLabelList(argparse.Action):
    """``--label_list`` of the NER scripts, read as given (``O B-PER I-PER`` or
    ``O,B-PER,I-PER``) and checked as BIO labels while the flags are parsed."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, parse_label_list(values))


def add_ner_args(p):
    """The flags that choose the NER data (run_msra_ner.py, run_msra_ner_ofa.py)."""
    p.add_argument("--task_name", default=NER_TASK, type=str.lower, choices=[NER_TASK, "msra"],
                   help="accepted for upstream command lines; the task is MSRA-style NER")
    p.add_argument("--data_dir", default=None,
                   help="directory with train/dev/test files (train.tsv | msra_train.txt | train.txt, ...), "
                        "MSRA \\002 layout or one 'char tag' a line; default: paddlenlp's msra_ner (online)")
    p.add_argument("--dev_ratio", type=float, default=0.1,
                   help="without a dev file: share of train held out as dev (seeded by --seed)")
    p.add_argument("--label_list", nargs="+", default=None, action=_NerLabelList,
                   help="BIO labels in classifier order (O B-PER I-PER ... or comma-separated); "
                        "default: from the data ('O' first, then sorted B-/I- pairs)")
    p.add_argument("--split_long", action="store_true",
                   help="split sentences longer than --max_seq_length into several examples "
                        "(default: truncate them)")
    return p


def check_ner_args(args):
    """Flag sanity of the NER scripts (reads ``args``, never changes it)."""
    if not 0 < args.dev_ratio < 1:
        raise UserError(f"--dev_ratio must be in (0, 1), got {args.dev_ratio}")
    if args.max_seq_length < 3:
        raise UserError(f"--max_seq_length must be at least 3, got {args.max_seq_length}")
    return args


def check_label_list(labels, task_type="classification", delimiter=","):
    """--label_list as given: no empty or repeated labels; for multilabel an
    item may hold several labels joined by the delimiter (``pos,neg``)."""
    out = []
    for item in labels:
        parts = item.split(delimiter) if task_type == "multilabel" else [item]
        out.extend(x.strip() for x in parts)
    if any(not x for x in out):
        raise UserError(f"--label_list: empty label in {labels}")
    dup = sorted({x for x in out if out.count(x) > 1})
    if dup:
        raise UserError(f"--label_list: label(s) given twice: {', '.join(dup)}")
    if len(out) < (1 if task_type == "multilabel" else 2):
        raise UserError(f"--label_list: {task_type} needs at least {1 if task_type == 'multilabel' else 2} labels")
    return out


def own_files(args):
    """((split, path), ...) of the own files given on the command line."""
    return tuple((f[: -len("_file")], getattr(args, f)) for f in OWN_FILE_FLAGS if getattr(args, f, None))
