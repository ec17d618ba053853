"""Training-step throughput of the real all-MiniLM-L6-v2 as a
BertForSequenceClassification on CPU (dynamic graph).

    python benchmarks/bench_train.py [--batch_size 32] [--max_seq_length 128] [--steps 10]

Converts the model on first use (utils/assets.fetch_minilm + utils/convert.py)
into <assets cache>/converted/all-minilm-l6-v2, then times full training
steps -- forward, cross-entropy, backward, AdamW step -- on random token ids
after a few warm-up steps, and prints examples/second and peak memory:
the process's resident set size (getrusage ru_maxrss, includes Python, paddle
and everything else) and paddle's own host allocator peak (bytes allocated by
paddle for tensors on the CPU place).
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import utils  # noqa: F401,E402  (before paddle: zlib fix)

import argparse  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

from utils import assets  # noqa: E402
from utils.errors import UserError, run_main  # noqa: E402

warnings.filterwarnings("ignore", message="Setuptools is replacing distutils")


def paddle_host_peak():
    """Peak bytes allocated by paddle's CPU allocator, or None if this paddle
    build does not expose the statistic."""
    try:
        from paddle.base import core
    except ImportError:  # paddle < 2.5
        from paddle.fluid import core
    try:
        return int(core.host_memory_stat_peak_value("Allocated", 0))
    except Exception:
        return None


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--max_seq_length", type=int, default=128)
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warmup_steps", type=int, default=2)
    p.add_argument("--num_labels", type=int, default=6)
    p.add_argument("--learning_rate", type=float, default=5e-5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model_dir", default=None, help="converted MiniLM dir (default: in the assets cache)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads (sets OMP_NUM_THREADS before paddle is imported; paddle forces 1 "
                        "when the variable is unset)")
    args = p.parse_args(argv)
    if args.threads is not None and args.threads <= 0:
        raise UserError("--threads must be positive")
    for flag in ("batch_size", "max_seq_length", "steps", "num_labels"):
        if getattr(args, flag) <= 0:
            raise UserError(f"--{flag} must be positive")
    if args.warmup_steps < 0:
        raise UserError("--warmup_steps must be >= 0")
    return args


def random_batches(tok, vocab_size, num_labels, B, L, n, seed):
    """``n`` (ids, labels) batches of full-length rows: random ids from 1000 up
    (no special token), the tokenizer's own [CLS]/<s> first and [SEP]/</s> last."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        ids = rng.integers(1000, vocab_size, (B, L), dtype=np.int64)
        ids[:, 0], ids[:, -1] = tok.cls_token_id, tok.sep_token_id
        yield ids, rng.integers(0, num_labels, (B,), dtype=np.int64)


def time_steps(model, opt, batches, warmup):
    """(seconds per timed step, losses): forward + cross-entropy + backward + AdamW step."""
    import paddle
    import paddle.nn.functional as F

    def step(ids, labels):
        logits = model(ids, attention_mask=paddle.ones_like(ids))
        loss = F.cross_entropy(logits, labels)
        loss.backward()
        opt.step()
        opt.clear_grad()
        return float(loss)   # forces the step to finish

    batches = [(paddle.to_tensor(i), paddle.to_tensor(y)) for i, y in batches]
    for ids, labels in batches[:warmup]:
        step(ids, labels)
    times, losses = [], []
    for ids, labels in batches[warmup:]:
        t0 = time.perf_counter()
        losses.append(step(ids, labels))
        times.append(time.perf_counter() - t0)
    return times, losses


def main(argv=None):
    args = parse_args(argv)
    if args.threads is not None:
        if "paddle" in sys.modules:
            raise UserError("--threads must be applied before paddle is imported")
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    model_dir = args.model_dir or assets.converted_minilm()

    import paddle
    from paddlenlp.transformers import BertForSequenceClassification
    from utils import compat
    from utils.modeling import load_tokenizer

    compat.quiet_libraries()
    paddle.set_device("cpu")
    paddle.seed(args.seed)
    model = BertForSequenceClassification.from_pretrained(model_dir, num_labels=args.num_labels)
    cfg = model.config
    if args.max_seq_length > cfg.max_position_embeddings:
        raise UserError(f"--max_seq_length {args.max_seq_length} exceeds the model's "
                        f"{cfg.max_position_embeddings} positions")
    model.train()
    opt = paddle.optimizer.AdamW(learning_rate=args.learning_rate, parameters=model.parameters(), weight_decay=0.01)
    n_params = sum(int(np.prod(q.shape)) for q in model.parameters())
    B, L = args.batch_size, args.max_seq_length
    batches = random_batches(load_tokenizer(model_dir, cfg), cfg.vocab_size, args.num_labels, B, L,
                             args.warmup_steps + args.steps, args.seed)
    times, losses = time_steps(model, opt, list(batches), args.warmup_steps)
    print_results(args, cfg, model_dir, n_params, times, losses)
    return 0


def print_results(args, cfg, model_dir, n_params, times, losses):
    import paddle
    B, L = args.batch_size, args.max_seq_length
    total = sum(times)
    rss_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # KiB on Linux
    paddle_peak = paddle_host_peak()
    threads = os.environ.get("OMP_NUM_THREADS", "unset")   # paddle sets it to 1 at import unless given
    print(f"model: all-MiniLM-L6-v2 as BertForSequenceClassification ({cfg.num_hidden_layers} layers, hidden "
          f"{cfg.hidden_size}, {args.num_labels} labels, {n_params:,} params) from {model_dir}")
    print(f"setup: paddle {paddle.__version__}, CPU ({os.cpu_count()} cores visible, OMP_NUM_THREADS={threads}), "
          f"{platform.python_implementation()} {platform.python_version()}, dynamic graph, float32, AdamW")
    print(f"batch_size {B}, max_seq_length {L}, {args.warmup_steps} warm-up + {args.steps} timed steps "
          f"(forward + cross-entropy + backward + AdamW step)")
    print(f"step time: mean {total / len(times) * 1000:.0f} ms, min {min(times) * 1000:.0f} ms, "
          f"max {max(times) * 1000:.0f} ms; loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    print(f"throughput: {B * len(times) / total:.1f} examples/s ({B * L * len(times) / total:,.0f} tokens/s)")
    print(f"peak memory: resident set size (getrusage ru_maxrss, whole process) {rss_peak_mb:,.0f} MiB")
    if paddle_peak is None:
        print("peak memory: paddle allocator statistic not available on this build")
    else:
        print(f"peak memory: paddle host allocator peak (core.host_memory_stat_peak_value('Allocated'), "
              f"tensors on CPU) {paddle_peak / 2**20:,.0f} MiB")


if __name__ == "__main__":
    sys.exit(run_main(main))
