"""Fixtures the tests build themselves: a tiny random BERT directory and
small learnable tasks in the GLUE layout.  Nothing is downloaded."""
import utils  # noqa: F401

import json
import os
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
GOOD = ["good", "great", "fine", "nice"]
BAD = ["bad", "awful", "poor", "sad"]
FILLER = [f"w{i}" for i in range(60)]
VOCAB = SPECIAL + GOOD + BAD + FILLER


def write_vocab(path):
    with open(path, "w") as f:
        f.write("\n".join(VOCAB) + "\n")


def tiny_config(**kw):
    cfg = dict(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
               intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
               attention_probs_dropout_prob=0.0, type_vocab_size=2, model_type="bert", pad_token_id=0)
    cfg.update(kw)
    return cfg


def write_tiny_bert(d, with_weights=True, seed=0, **kw):
    """A model directory: config.json + vocab.txt (+ random encoder weights)."""
    os.makedirs(d, exist_ok=True)
    write_vocab(os.path.join(d, "vocab.txt"))
    cfg = tiny_config(**kw)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)
    if with_weights:
        import paddle
        from paddlenlp.transformers import BertConfig, BertModel
        paddle.seed(seed)
        BertModel(BertConfig(**cfg)).save_pretrained(d)
        with open(os.path.join(d, "config.json"), "w") as f:  # keep the plain config
            json.dump(cfg, f)
    return d


def sentence(rng, label, n=None):
    n = n or rng.randint(4, 10)
    words = list(rng.choice(FILLER, size=n))
    marker = GOOD if label else BAD
    for _ in range(rng.randint(1, 3)):
        words.insert(rng.randint(0, len(words) + 1), str(rng.choice(marker)))
    return " ".join(words)


def write_splits(d, header, row, n_train, n_dev, seed):
    """train.tsv and dev.tsv in ``d``: ``header``, then ``row(rng, i)`` lines
    drawn from one seeded generator (train first)."""
    rng = np.random.RandomState(seed)
    os.makedirs(d, exist_ok=True)
    for split, n in (("train", n_train), ("dev", n_dev)):
        with open(os.path.join(d, f"{split}.tsv"), "w") as f:
            f.write(header + "\n")
            for i in range(n):
                f.write(row(rng, i) + "\n")
    return d


def write_sst2(d, n_train=240, n_dev=60, seed=0):
    """Single sentence: label 1 iff the sentence holds a GOOD word."""
    def row(rng, i):
        y = int(rng.randint(2))
        return f"{sentence(rng, y)}\t{y}"
    return write_splits(d, "sentence\tlabel", row, n_train, n_dev, seed)


def write_rte(d, n_train=240, n_dev=60, seed=1):
    """Pair: entailment iff the SECOND sentence is positive; the first carries
    random markers, so the model must read the pair and tell its segments apart."""
    def row(rng, i):
        a, b = int(rng.randint(2)), int(rng.randint(2))
        return f"{i}\t{sentence(rng, a)}\t{sentence(rng, b)}\t{'entailment' if b == 1 else 'not_entailment'}"
    return write_splits(d, "index\tsentence1\tsentence2\tlabel", row, n_train, n_dev, seed)


def write_stsb(d, n_train=240, n_dev=60, seed=2):
    """Regression: score = 5 * share of GOOD markers among the markers of both sentences."""
    def row(rng, i):
        a, b = int(rng.randint(2)), int(rng.randint(2))
        return f"{i}\tg\tf\t2012\t{i}\ts\ts\t{sentence(rng, a)}\t{sentence(rng, b)}\t{2.5 * (a + b):.3f}"
    return write_splits(d, "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore",
                        row, n_train, n_dev, seed)


def paddle3():
    """Whether the tests run on the paddle 3 line (requirements-paddle3.txt)."""
    from utils.compat import paddle_major
    return paddle_major() >= 3


def model_ext():
    """The program file suffix ``paddle.jit.save`` writes on this line:
    .pdmodel (paddle 2.6) or .json (paddle 3, a PIR program)."""
    return ".json" if paddle3() else ".pdmodel"


def pinned(package):
    """The version of ``package`` pinned for this paddle line (requirements[-paddle3].txt
    or its -test.txt), so a test checks the pin, not a literal."""
    files = ("requirements-paddle3.txt", "requirements-paddle3-test.txt") if paddle3() else \
        ("requirements.txt", "requirements-test.txt")
    for name in files:
        with open(os.path.join(REPO, name)) as f:
            for line in f:
                spec = line.split("#")[0].strip()
                if spec.lower().startswith(package.lower() + "=="):
                    return spec.split("==")[1]
    raise AssertionError(f"{package} is not pinned in {files}")


def run_script(script, *args, check=True, timeout=900):
    """Run one of the suite's scripts in a fresh process (as a user would)."""
    cmd = [sys.executable, os.path.join(REPO, script)] + [str(a) for a in args]
    env = dict(os.environ, PYTHONPATH=REPO)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)
    if check and r.returncode != 0:
        raise AssertionError(f"{script} exited {r.returncode}\nSTDOUT:\n{r.stdout[-4000:]}\nSTDERR:\n{r.stderr[-4000:]}")
    return r


def read_json(path):
    with open(path) as f:
        return json.load(f)


MNLI_LABELS = ("contradiction", "entailment", "neutral")


def write_mnli(d, n_train=60, n_dev=20, seed=3):
    """MNLI layout: 12 columns in train, 16 in the dev files; gold_label last."""
    rng = np.random.RandomState(seed)
    os.makedirs(d, exist_ok=True)
    head = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
            "sentence1_parse", "sentence2_parse", "sentence1", "sentence2"]
    for split, n, extra in (("train", n_train, ["label1"]), ("dev_matched", n_dev, [f"label{i}" for i in range(1, 6)]),
                            ("dev_mismatched", n_dev, [f"label{i}" for i in range(1, 6)])):
        with open(os.path.join(d, f"{split}.tsv"), "w") as f:
            f.write("\t".join(head + extra + ["gold_label"]) + "\n")
            for i in range(n):
                y = MNLI_LABELS[rng.randint(3)]
                a, b = sentence(rng, 1), sentence(rng, y == "entailment")
                row = [str(i), "p", "q", "fiction", "(x)", "(y)", "(X)", "(Y)", a, b] + [y] * len(extra) + [y]
                f.write("\t".join(row) + "\n")
    return d


# --------------------------------------------------------------------------- own data (TSV / CSV files)
X_WORDS = ["w50", "w51", "w52", "w53"]   # the "x" marker of the multilabel task
PLAIN = FILLER[:50]                            # filler that is never a marker


def marked_sentence(rng, markers, n=None):
    """Filler words with 1-2 words of each marker list in ``markers`` inserted."""
    words = list(rng.choice(PLAIN, size=n or rng.randint(4, 10)))
    for marker in markers:
        for _ in range(rng.randint(1, 3)):
            words.insert(rng.randint(0, len(words) + 1), str(rng.choice(marker)))
    return " ".join(words)


def write_own_csv(path, n=240, seed=4):
    """CSV classification (id, review, sentiment): "positive" iff the review
    holds a GOOD word.  Reviews contain commas and quotes, so the csv module's
    quoting is needed to read them."""
    import csv
    rng = np.random.RandomState(seed)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "review", "sentiment"])
        for i in range(n):
            y = int(rng.randint(2))
            words = sentence(rng, y).split()
            words[0] = f'"{words[0]}",'                       # quotes and a comma inside the field
            words.insert(len(words) // 2, "a, b")
            w.writerow([i, " ".join(words), "positive" if y else "negative"])
    return path


def multilabel_tags(rng):
    """At most one of pos/neg (none in 1 of 5 examples), and x in half of them:
    "pos", "neg", "pos,x", "neg,x", "x" or "" (no label)."""
    sentiment = ["pos", "neg", "pos", "neg", None][rng.randint(5)]
    return [t for t in (sentiment, "x" if rng.rand() < 0.5 else None) if t]


def write_own_multilabel_tsv(path, n=240, seed=5):
    """TSV multilabel (text, tags): "pos" iff a GOOD word, "neg" iff a BAD
    word, "x" iff an X word (w50..w53) occurs; tags joined by ",", empty for none."""
    rng = np.random.RandomState(seed)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    marker = {"pos": GOOD, "neg": BAD, "x": X_WORDS}
    with open(path, "w", encoding="utf-8") as f:
        f.write("text\ttags\n")
        for _ in range(n):
            tags = multilabel_tags(rng)
            f.write(f"{marked_sentence(rng, [marker[t] for t in tags])}\t{','.join(tags)}\n")
    return path


def write_own_regression_tsv(path, n=240, seed=6):
    """TSV pair regression (premise, hypothesis, similarity): 2.5 x the number
    of positive sentences of the pair."""
    rng = np.random.RandomState(seed)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("premise\thypothesis\tsimilarity\n")
        for _ in range(n):
            a, b = int(rng.randint(2)), int(rng.randint(2))
            f.write(f"{sentence(rng, a)}\t{sentence(rng, b)}\t{2.5 * (a + b):.2f}\n")
    return path


_SCRIPTS = {}


def script_module(script):
    """One of the suite's scripts imported as a module (cached)."""
    import importlib.util
    if script not in _SCRIPTS:
        name = "suite_script_" + os.path.splitext(os.path.basename(script))[0]
        spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, script))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        _SCRIPTS[script] = mod
    return _SCRIPTS[script]


def run_in_process(script, *args):
    """Run a script's ``main`` in this process, as its command line would
    (``run_main``: a UserError exits 2 with one line on stderr).  Saves the
    1-2 s interpreter and library start of a fresh process per run."""
    from utils.errors import run_main
    return run_main(script_module(script).main, [str(a) for a in args])
