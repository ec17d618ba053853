"""Deploy: run an exported static model on a file of raw text.

    python predict.py --model_prefix out/SST-2-ofa/static_0.5/model --input_file reviews.txt \
        --output_file predictions.tsv

Input: one example a line; a TAB separates the two texts of a pair task;
for NER each line is a sentence of characters.  Output: classification ->
``label<TAB>probability<TAB>text``; regression -> ``score<TAB>text``;
multilabel -> ``labels<TAB>probabilities<TAB>text``, the labels whose
probability is > 0.5 joined by the label delimiter (empty if none) and
``label=probability`` of every label joined the same way; NER -> one JSON
object a line with the entities (text, type, start, end).
"""
import utils  # noqa: F401  (first: stack fixes before paddle is imported)

import argparse
import json
import os
import sys

from utils import inference
from utils.batching import is_sentencepiece, text_batches
from utils.check_inputs import read_text_file
from utils.errors import UserError, run_main, user_error_from
from utils.evaluation import prediction_fields
from utils.modeling import load_tokenizer
from utils.output_dir import check_writable
from utils.publish import staged_file


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_prefix", required=True, help="static model prefix written by export_model.py")
    p.add_argument("--input_file", required=True)
    p.add_argument("--output_file", required=True)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--max_seq_length", type=int, default=None, help="default: the exported model's")
    p.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no_mkldnn", action="store_true", help="CPU: turn oneDNN off")
    p.add_argument("--label_delimiter", default=None,
                   help="multilabel: joins the predicted labels (default: the one the model was trained with, "
                        "else ',')")
    args = p.parse_args(argv)
    if args.batch_size <= 0:
        raise UserError(f"--batch_size must be positive, got {args.batch_size}")
    if args.max_seq_length is not None and args.max_seq_length < 3:
        raise UserError(f"--max_seq_length must be at least 3, got {args.max_seq_length}")
    check_writable(args.output_file, "--output_file", want_dir=False)
    if os.path.exists(args.output_file) and os.path.exists(args.input_file) and \
            os.path.samefile(args.input_file, args.output_file):
        raise UserError(f"--output_file {args.output_file} is the --input_file")
    return args


def count_truncated(tokenizer, texts, max_len):
    """(number of examples longer than ``max_len`` tokens, first line number)."""
    pair_specials = 4 if is_sentencepiece(tokenizer) else 3   # <s> a </s></s> b </s> | [CLS] a [SEP] b [SEP]
    n, first = 0, None
    for i, (a, b) in enumerate(texts, 1):
        length = len(tokenizer.tokenize(a)) + (len(tokenizer.tokenize(b)) + pair_specials if b is not None else 2)
        if length > max_len:
            n, first = n + 1, first or i
    return n, first


def label_delimiter(args, info):
    if args.label_delimiter:
        return args.label_delimiter
    return (info.get("own_data") or {}).get("label_delimiter") or ","


def format_sentence_rows(info, texts, logits, delimiter=","):
    fields = prediction_fields(info["task_type"], info.get("label_list"), logits, delimiter)
    return ["\t".join(cols + [a if b is None else f"{a}\t{b}"]) for (a, b), cols in zip(texts, fields)]


def main(argv=None):
    args = parse_args(argv)
    from tqdm import tqdm
    info = inference.read_info(args.model_prefix)
    texts = read_text_file(args.input_file, "--input_file")      # a bad input file fails before loading
    tok_dir = os.path.join(os.path.dirname(os.path.abspath(args.model_prefix)), info["tokenizer_dir"])
    tokenizer = load_tokenizer(tok_dir)
    max_len = args.max_seq_length or info.get("max_seq_length", 128)
    with user_error_from(f"--model_prefix {args.model_prefix}: cannot load the static model (damaged or "
                         f"incomplete files?)", RuntimeError, ValueError, OSError):
        predictor = inference.create_predictor(args.model_prefix, device=args.device, threads=args.threads,
                                               mkldnn=not args.no_mkldnn)
    ner = info["task_type"] == "token_classification"
    delimiter = label_delimiter(args, info)
    if ner:
        from utils.ner_metrics import predict_lines_batch
        texts = [a if b is None else f"{a}\t{b}" for a, b in texts]
    else:   # NER splits long sentences; sentence models see the first max_len tokens only
        n_long, first = count_truncated(tokenizer, texts, max_len)
        if n_long:
            print(f"warning: {n_long} of {len(texts)} examples are longer than {max_len} tokens and are truncated "
                  f"to them (first: {args.input_file}:{first}; the model was exported for --max_seq_length "
                  f"{info.get('max_seq_length')})", file=sys.stderr, flush=True)
    with staged_file(args.output_file) as tmp, open(tmp, "w", encoding="utf-8") as out:
        for i in tqdm(range(0, len(texts), args.batch_size), desc="predict", unit="batch"):
            chunk = texts[i:i + args.batch_size]
            if ner:
                for row in predict_lines_batch(predictor, tokenizer, chunk, info["label_list"], max_len):
                    out.write(json.dumps(row, ensure_ascii=False) + "\n")
            else:
                (ids, seg), = text_batches(tokenizer, chunk, max_len, batch_size=len(chunk))
                logits = inference.run_predictor(predictor, ids, seg)
                out.write("\n".join(format_sentence_rows(info, chunk, logits, delimiter)) + "\n")
    print(f"wrote {len(texts)} predictions to {args.output_file}")


if __name__ == "__main__":
    run_main(main)
