"""The texts quantize.py works on, kept disjoint, and one pass of a predictor
over them.

* calibration: ``batch_num x batch_size`` examples (seeded sample) of the
  training split, or of ``--calibration_file``;
* agreement pool: ``--agreement_file`` (the task's text columns; labels, if
  any, are ignored), else the training examples calibration did not draw
  (with ``--search``: none of the 4x as many the search may calibrate on).
  Texts equal to a calibration or dev text are dropped; the rest is shuffled
  (seeded) and cut into a *search* part (only the search and the layer
  sensitivity read it) and a *held-out* part (only the final guard reads it);
* dev: the labelled dev split(s), read only by the final guard.

So the guard's agreement and dev metric are measured on texts that neither
calibration nor the choice of recipe saw.
"""
import logging
import time
from dataclasses import replace

import numpy as np

from .errors import UserError
from .parallel import eval_batches

logger = logging.getLogger("bert_suite")


def _text_key(ex):
    return "".join(ex.chars) if hasattr(ex, "chars") else (ex.text_a, ex.text_b)


def _count_error(flag, what, have, want):
    return UserError(f"{flag}: {what} holds {have} usable examples, fewer than the {want} asked for")


def ner_split(args, info):
    """(dev_ratio, seed, split_long) of a NER model's data: --dev_ratio /
    --split_long where given, else what its training recorded (info.json
    ``data_split``), else the training scripts' defaults (0.1, 42, truncate).
    Only the NER data has these choices: a classification model refuses them."""
    record = info.get("data_split") or {}
    given = {k: getattr(args, k, None) for k in ("dev_ratio", "split_long")}
    if info.get("task_type", "classification") != "token_classification":
        flags = [f"--{k}" for k, v in given.items() if v is not None]
        if flags:
            raise UserError(f"{' and '.join(flags)}: only for NER models; {args.model_prefix} is a "
                            f"{info.get('task_type', 'classification')} model (its dev split is the task's dev file)")
        return None
    dev_ratio = given["dev_ratio"] if given["dev_ratio"] is not None else record.get("dev_ratio", 0.1)
    split_long = given["split_long"] if given["split_long"] is not None else record.get("split_long", False)
    seed = record.get("seed", 42)
    logger.info("NER data: dev = the seeded %g slice of train (seed %d) when there is no dev file, long sentences "
                "%s (%s)", dev_ratio, seed, "split into windows" if split_long else "truncated",
                "as given" if any(v is not None for v in given.values()) else
                "as the model's training recorded" if record else "the training scripts' defaults")
    return float(dev_ratio), int(seed), bool(split_long)


class QuantData:
    """Calibration batches, search / held-out agreement features and the dev
    features of the model's task, and how to score them (see the module
    docstring for which texts go where)."""

    def __init__(self, args, info, tokenizer, max_len, pools=True):
        self.kind = info.get("task_type", "classification")
        self.max_seq_length = max_len
        if self.kind == "token_classification":
            train, dev, read_file = self._ner(args, info, tokenizer, max_len)
        else:
            ner_split(args, info)     # refuses the NER-only flags
            train, dev, read_file = self._glue(args, info, tokenizer, max_len)
        self.dev = dev
        if pools:
            self._pools(args, train, read_file)

    def _pools(self, args, train, read_file):
        calib_src = read_file(args.calibration_file, "--calibration_file") if args.calibration_file else train
        want = args.batch_num * args.batch_size
        if len(calib_src) < want:
            raise _count_error("--calibration_file" if args.calibration_file else "--batch_num x --batch_size",
                               args.calibration_file or "the training split", len(calib_src), want)
        order = np.random.RandomState(args.seed).permutation(len(calib_src))
        calib = [calib_src[i] for i in order[:want]]
        reserve = min(len(calib_src), want * (4 if args.search else 1))   # the search tries x2 and x4 batches
        self.calibration_pool = [calib_src[i] for i in order[:reserve]]
        if args.agreement_file:
            pool = read_file(args.agreement_file, "--agreement_file")
        else:
            pool = [train[i] for i in (order[reserve:] if calib_src is train else range(len(train)))]
        seen = {_text_key(ex) for ex in self.calibration_pool} | {_text_key(ex) for exs in self._dev_examples
                                                                   for ex in exs}
        pool = [ex for ex in pool if _text_key(ex) not in seen]
        pool = [pool[i] for i in np.random.RandomState(args.seed + 1).permutation(len(pool))]
        n_search = args.search_examples if args.use_search_texts else 0
        n_held = args.agreement_examples
        flag = "--agreement_file" if args.agreement_file else "agreement text (training examples not calibrated on)"
        if n_held is None:  # default: up to 2,000
            n_held = min(2000, len(pool) - n_search)
            if n_held < 1:
                raise _count_error(flag, args.agreement_file or "the training split", len(pool), n_search + 1)
        if len(pool) < n_search + n_held:
            raise _count_error(flag, args.agreement_file or "the training split", len(pool), n_search + n_held)
        self.pool_sizes = {"calibration": len(calib), "search": n_search, "held_out": n_held, "pool": len(pool),
                           "agreement_source": args.agreement_file or "training examples not calibrated on"}
        self.batches = self.calibration_batches(args.batch_num, args.batch_size)
        # quantize.py --qat_steps tunes on the calibration source minus every text the guard or the search reads
        self._qat_source = calib_src
        self._guard_keys = {_text_key(ex) for ex in pool[:n_search + n_held]} | \
            {_text_key(ex) for exs in self._dev_examples for ex in exs}
        self.search = self.encode(pool[:n_search])
        self.held_out = self.encode(pool[n_search:n_search + n_held])

    # ------------------------------------------------------------- task plumbing
    def _glue(self, args, info, tokenizer, max_len):
        from .data import Batcher, encode, load_glue, read_glue_file
        from .metrics import MAIN_KEY, compute_metrics
        from .tasks import get_task
        name = info.get("task_name")
        if not name:
            raise UserError(f"{args.model_prefix}.info.json: no task_name; re-export the model with export_model.py")
        task = get_task(name)
        splits = load_glue(task, args.data_dir, ("train",) + tuple(task.dev_splits))
        self._dev_examples = [splits[s] for s in task.dev_splits]
        self.encode = lambda exs: encode(exs, tokenizer, max_len)
        self.collate = Batcher(tokenizer.pad_token_id, task.is_regression, getattr(task, "multilabel", False))
        self.metric_name = MAIN_KEY[task.metric]
        self.score = lambda logits, labels: float(compute_metrics(task.metric, logits, labels)[self.metric_name])
        self.results = lambda logits, labels: compute_metrics(task.metric, logits, labels)
        self.label_list = None

        def read_file(path, flag):
            try:
                return [replace(ex, label=None) for ex in read_glue_file(path, task, labelled=None)]
            except UserError as e:
                raise UserError(f"{flag}: {e} (expected {task.name} text)") from None
        return splits["train"], {s: encode(splits[s], tokenizer, max_len) for s in task.dev_splits}, read_file

    def _ner(self, args, info, tokenizer, max_len):
        from .ner_data import load_ner, read_ner_file
        from .ner_encode import NerBatcher, encode_ner
        from .ner_metrics import ner_metrics
        label_list = info.get("label_list")
        if not label_list:
            raise UserError(f"{args.model_prefix}.info.json: no label_list for the NER model")
        dev_ratio, seed, split_long = ner_split(args, info)
        data = load_ner(args.data_dir, dev_ratio, seed, label_list=label_list)
        self._dev_examples = [data.splits["dev"]]
        self.encode = lambda exs: encode_ner(exs, tokenizer, max_len, label_list, split_long, name="agreement")
        self.collate = NerBatcher(tokenizer.pad_token_id)
        self.metric_name = "f1"
        self.results = lambda ids, labels: ner_metrics(ids, labels, label_list)
        self.score = lambda ids, labels: float(ner_metrics(ids, labels, label_list)["f1"])
        self.label_list = label_list

        def read_file(path, flag):
            try:
                return [replace(ex, tags=None) for ex in read_ner_file(path)]
            except UserError as e:
                raise UserError(f"{flag}: {e} (expected NER sentences)") from None
        return data.splits["train"], {"dev": encode_ner(data.splits["dev"], tokenizer, max_len, label_list,
                                                        split_long, name="dev")}, read_file

    def qat_features(self):
        """The calibration source's texts that neither the guard nor the search reads, encoded."""
        return self.encode([ex for ex in self._qat_source if _text_key(ex) not in self._guard_keys])

    def calibration_batches(self, batch_num, batch_size):
        """The first batch_num x batch_size examples of the seeded calibration
        order, as feed arrays (input_ids, token_type_ids)."""
        exs = self.calibration_pool[:batch_num * batch_size]
        feats = self.encode(exs)
        return [self.collate(feats[i:i + batch_size])[:2] for i in range(0, len(feats), batch_size)]

    # ------------------------------------------------------------- running a predictor
    def outputs(self, predictor, feats, batch_size=32):
        """One pass over ``feats`` (sorted by length for speed, returned in
        their order): (per-example outputs for the agreement measure, seconds
        in the predictor).  Outputs: logit rows; regression scores; NER: tag
        ids of each character's first piece."""
        from .inference import run_predictor
        out, seconds = [None] * len(feats), 0.0
        for idx in eval_batches(len(feats), batch_size, [len(f["input_ids"]) for f in feats]):
            ids, seg, _ = self.collate([feats[j] for j in idx])
            t = time.perf_counter()
            logits = run_predictor(predictor, ids, seg)
            seconds += time.perf_counter() - t
            for row, j in enumerate(idx):
                if self.kind == "token_classification":
                    out[j] = logits[row].argmax(-1)[feats[j]["first_token"]]
                elif self.kind == "regression":
                    out[j] = float(logits[row].reshape(-1)[0])
                else:
                    out[j] = logits[row]
        return out, seconds

    def evaluate_dev(self, predictor, batch_size=32):
        """({split: metrics}, main score of the first split, {split: outputs}, seconds)."""
        results, outs, seconds = {}, {}, 0.0
        for split, feats in self.dev.items():
            outs[split], s = self.outputs(predictor, feats, batch_size)
            results[split] = self.results(*self.scorable(outs[split], feats))
            seconds += s
        first = next(iter(results))
        return results, float(results[first][self.metric_name]), outs, seconds

    def scorable(self, outs, feats):
        """(predictions, labels) arrays the task's metric takes, from outputs."""
        if self.kind == "token_classification":
            t = max(len(o) for o in outs)
            preds = np.zeros((len(outs), t), dtype=np.int64)
            labels = np.full((len(outs), t), -100, dtype=np.int64)
            for i, (o, f) in enumerate(zip(outs, feats)):
                preds[i, :len(o)] = o
                labels[i, :len(o)] = [f["labels"][p] for p in f["first_token"]]
            return preds, labels
        labels = np.asarray([f["label"] for f in feats])
        return np.asarray(outs, dtype=np.float32).reshape(len(outs), -1), labels
