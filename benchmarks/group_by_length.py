"""What --group_by_length saves on NER training: padded positions per epoch,
and the step time of the same model on plain and on grouped batches, timed
in pairs (one plain step, one grouped step, alternating in one process, so a
shared machine slows both alike).  Then what evaluation's length-sorted
batches (utils.parallel.eval_batches with lengths, always on) save against
batches in file order: --eval_rounds pairs of passes over the test split's
windows (or its first --eval_examples), batch 32, forward only.

    python benchmarks/group_by_length.py --model_dir out/msra_demo/teacher/model_best \
        --data_dir out/msra_demo/data [--max_seq_length 64] [--batch_size 16] [--steps 80] \
        [--eval_rounds 1] [--eval_examples 0]

The batches are those of the training loop's first epoch (utils.parallel.
epoch_batches, seed 42, with and without the lengths); a step is forward,
token cross-entropy, backward and an AdamW update.  Long sentences are split
into windows, as --split_long does.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import utils  # noqa: E402,F401

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from utils.errors import UserError, run_main  # noqa: E402

KIND = "token_classification"


def padded_positions(batches, lengths):
    """Positions computed when every batch is padded to its longest example."""
    return int(sum(len(b) * max(lengths[i] for i in b) for b in batches))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_dir", required=True, help="a NER model directory (or any BERT to start one from)")
    p.add_argument("--data_dir", required=True, help="MSRA-style data (its train split is batched)")
    p.add_argument("--max_seq_length", type=int, default=64)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--steps", type=int, default=80, help="pairs of timed steps")
    p.add_argument("--dev_ratio", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--eval_rounds", type=int, default=1, help="pairs of timed evaluation passes (0: none)")
    p.add_argument("--eval_examples", type=int, default=0, help="evaluate the first N test windows (0: all)")
    p.add_argument("--output", default=None, help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    if args.steps <= 0 or args.batch_size <= 0:
        raise UserError("--steps and --batch_size must be positive")
    if args.eval_rounds < 0 or args.eval_examples < 0:
        raise UserError("--eval_rounds and --eval_examples must be >= 0")
    if not os.path.isdir(args.model_dir):
        raise UserError(f"--model_dir: {args.model_dir}: not a directory")

    import paddle
    from tqdm import tqdm
    from utils.losses import token_loss
    from utils.modeling import load_model
    from utils.ner_data import load_ner
    from utils.ner_encode import NerBatcher, encode_ner
    from utils.parallel import epoch_batches
    paddle.set_device("cpu")
    data = load_ner(args.data_dir, args.dev_ratio, args.seed)
    model, tok, _ = load_model(args.model_dir, KIND, len(data.label_list))
    feats = encode_ner(data.splits["train"], tok, args.max_seq_length, data.label_list, True, "train")
    lengths = [len(f["input_ids"]) for f in feats]
    plain = epoch_batches(len(feats), args.batch_size, 0, args.seed)
    grouped = epoch_batches(len(feats), args.batch_size, 0, args.seed, lengths=lengths)

    epoch = {"real_tokens": int(sum(lengths)), "plain_positions": padded_positions(plain, lengths),
             "grouped_positions": padded_positions(grouped, lengths)}

    collate = NerBatcher(tok.pad_token_id)
    opt = paddle.optimizer.AdamW(learning_rate=1e-5, parameters=model.parameters())
    model.train()

    def step(batch):
        ids, types, labels = collate([feats[i] for i in batch])
        t = time.perf_counter()
        loss = token_loss(model(paddle.to_tensor(ids), token_type_ids=paddle.to_tensor(types)),
                          paddle.to_tensor(labels))
        loss.backward()
        opt.step()
        opt.clear_grad()
        return time.perf_counter() - t, ids.shape[1]

    for b in plain[:3]:     # warm-up
        step(b)
    n = min(args.steps, len(plain) - 3, len(grouped))
    tp, tg, lp, lg = [], [], [], []
    for i in tqdm(range(n), desc="paired steps"):
        a, la = step(plain[3 + i])
        b, lb = step(grouped[i])
        tp.append(a), lp.append(la), tg.append(b), lg.append(lb)
    out = {"model_dir": args.model_dir, "train_windows": len(feats), "batch_size": args.batch_size,
           "max_seq_length": args.max_seq_length, "epoch": epoch, "pairs": n,
           "plain_seconds": float(np.sum(tp)), "grouped_seconds": float(np.sum(tg)),
           "plain_mean_padded_length": float(np.mean(lp)), "grouped_mean_padded_length": float(np.mean(lg)),
           "speed_up": float(np.sum(tp) / np.sum(tg))}
    print(f"one epoch of {len(feats):,} windows, batch {args.batch_size}: positions computed "
          f"{epoch['plain_positions']:,} plain, {epoch['grouped_positions']:,} grouped "
          f"(real tokens {epoch['real_tokens']:,}: {epoch['real_tokens'] / epoch['plain_positions']:.0%} -> "
          f"{epoch['real_tokens'] / epoch['grouped_positions']:.0%})")
    print(f"{n} paired training steps: plain {out['plain_seconds']:.1f} s (mean padded length "
          f"{out['plain_mean_padded_length']:.1f}), grouped {out['grouped_seconds']:.1f} s "
          f"({out['grouped_mean_padded_length']:.1f}): grouped steps x{out['speed_up']:.2f} faster")
    if args.eval_rounds:
        out["eval"] = time_eval(args, model, tok, data, collate)
    if args.output:
        from utils.publish import write_json_atomic
        write_json_atomic(args.output, out)


def time_eval(args, model, tok, data, collate):
    """Paired passes over the test windows: batches in file order, then sorted by length."""
    import paddle
    from utils.ner_encode import encode_ner
    from utils.parallel import eval_batches
    test = data.splits.get("test")
    if not test:
        raise UserError(f"--data_dir {args.data_dir}: no test split to time evaluation on")
    feats = encode_ner(test, tok, args.max_seq_length, data.label_list, True, "test")
    if args.eval_examples:
        feats = feats[:args.eval_examples]
    lengths = [len(f["input_ids"]) for f in feats]
    plans = {"file_order": eval_batches(len(feats), 32), "sorted": eval_batches(len(feats), 32, lengths)}
    model.eval()
    seconds = {k: 0.0 for k in plans}
    positions = {k: padded_positions(v, lengths) for k, v in plans.items()}
    with paddle.no_grad():
        for _ in range(args.eval_rounds):
            for name, batches in plans.items():
                t = time.perf_counter()
                for b in batches:
                    ids, types, _ = collate([feats[i] for i in b])
                    model(paddle.to_tensor(ids), token_type_ids=paddle.to_tensor(types)).numpy()
                seconds[name] += time.perf_counter() - t
    res = {"windows": len(feats), "rounds": args.eval_rounds, "seconds": seconds, "positions": positions,
           "speed_up": seconds["file_order"] / seconds["sorted"]}
    print(f"evaluation of {len(feats):,} test windows, batch 32, {args.eval_rounds} paired pass(es): file order "
          f"{seconds['file_order']:.1f} s ({positions['file_order']:,} positions), sorted by length "
          f"{seconds['sorted']:.1f} s ({positions['sorted']:,}): x{res['speed_up']:.2f} faster")
    return res


if __name__ == "__main__":
    run_main(main)
