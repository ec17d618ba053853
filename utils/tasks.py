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
"""
from dataclasses import dataclass
from typing import Optional

from .errors import UserError


@dataclass(frozen=True)
class TaskSpec:
    name: str                    # canonical name, e.g. "SST-2"
    text_a: str                  # column holding the first text
    text_b: Optional[str]        # column holding the second text; None = single sentence
    label: str                   # column holding the label
    labels: Optional[tuple]      # label strings as in the files; None = regression
    metric: str                  # "acc" | "mcc" | "acc_and_f1" | "pearson_and_spearman"
    dev_splits: tuple            # ("dev",) or ("dev_matched", "dev_mismatched")
    columns: Optional[tuple] = None   # headerless files: column names by position
    hub_name: str = ""           # name for paddlenlp load_dataset('glue', hub_name)
    test_splits: tuple = ("test",)    # unlabelled GLUE test files

    @property
    def is_regression(self) -> bool:
        return self.labels is None

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
