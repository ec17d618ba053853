"""Real inputs for numerical checks (export, quantization): the task's dev
texts, a file of raw text, or, when neither is at hand, sentences made of
vocabulary words (said with a warning)."""
import logging
import os

import numpy as np

from .errors import UserError

logger = logging.getLogger("bert_suite")


def read_text_file(path, flag="--check_text"):
    """One example a line; a TAB separates the two texts of a pair."""
    if not os.path.isfile(path):
        raise UserError(f"{flag}: {path} does not exist")
    out = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise UserError(f"{path}:{lineno}: not UTF-8 text (byte {raw[e.start]:#04x} at column {e.start + 1}); "
                                f"convert the file to UTF-8") from None
            if line.strip():
                a, _, b = line.partition("\t")
                out.append((a, b or None))
    if not out:
        raise UserError(f"{flag}: {path} holds no text")
    return out


def load_check_texts(info, limit, check_text=None, dev_file=None, data_dir=None):
    """Up to ``limit`` texts for the check, from the first of: ``check_text``
    (a raw text file); for a model trained on own data (``info['own_data']``
    records its columns), ``dev_file`` read with those columns; for a GLUE
    or NER model, ``data_dir``; else vocabulary sentences (with a warning)."""
    if check_text:
        return read_text_file(check_text)[:limit]
    if info.get("own_data"):
        if dev_file:
            from .data import read_glue_file
            from .tasks import FILE_TYPES, own_task_from_info
            if os.path.splitext(dev_file)[1].lower() not in FILE_TYPES:
                raise UserError(f"--dev_file: {dev_file}: unknown file type (expected a .tsv or .csv file "
                                f"with a header row)")
            task = own_task_from_info(info, files=(("dev", dev_file),))
            return [(e.text_a, e.text_b) for e in read_glue_file(dev_file, task, labelled=False)[:limit]]
        if data_dir:
            logger.warning("the model was trained on own data: --data_dir is for GLUE tasks; pass --dev_file "
                           "(its dev file) or --check_text for the check")
        logger.warning("no --dev_file or --check_text: the check runs on sentences made of vocabulary words")
        return synthetic_texts(limit)
    task_name = info.get("task_name")
    if data_dir and task_name:
        if info.get("task_type") == "token_classification":
            from .ner_data import load_ner_dev_texts
            split = info.get("data_split") or {}    # the dev slice the model's training held out
            texts = load_ner_dev_texts(data_dir, split.get("dev_ratio", 0.1), split.get("seed", 42))
            return [(chars, None) for chars in texts[:limit]]
        from .data import load_glue
        from .tasks import GLUE_TASKS, get_task
        if task_name in GLUE_TASKS:
            task = get_task(task_name)
            split = task.dev_splits[0]
            return [(e.text_a, e.text_b) for e in load_glue(task, data_dir, (split,))[split][:limit]]
    logger.warning("no --data_dir or --check_text: the check runs on sentences made of vocabulary words")
    return synthetic_texts(limit)


def synthetic_texts(n, seed=0):
    rng = np.random.RandomState(seed)
    words = ["the", "a", "movie", "good", "bad", "is", "was", "very", "not", "story", "and", "it", "of", "plot"]
    return [(" ".join(rng.choice(words, size=rng.randint(3, 20))), None) for _ in range(n)]
