"""One command from a fine-tuned model to the best deployable model under a
budget measured on this machine.

    python compress.py --model_name_or_path out/SST-2/best --task_name SST-2 --data_dir glue_data \
        --output_dir out/SST-2-compress --latency_budget_ms 10 --batch_size 1 --max_seq_length 128 \
        [--size_budget_mb 60] [--max_metric_drop 0.01] [--int8] [--width_mult_list 1.0 3/4 1/2]

Stages (each one of the suite's scripts, run as its own process with its own
checks; the output of each is kept under --output_dir with a completion
marker in ``stages/``):

1. ofa      run_glue_ofa.py (run_msra_ner_ofa.py for --task_name msra) over
            the width (x --depth_mult_list) grid -> ``ofa/``
2. export   export_model.py of the teacher and of every trained sub-network,
            each checked -> ``candidates/NAME/static/model``
3. int8     (--int8) quantize.py of each, with its accuracy guard
            (--int8_max_drop); a refused model is no candidate;
            --int8_qat_steps N first tunes each candidate's weights for
            INT8 (quantize.py --qat_steps, on its ``dynamic/`` export)
4. measure  benchmark.py of every candidate at --batch_size x --max_seq_length
            -> ``measure/bB_lL.json``; size = the static model's files
5. decide   the best dev metric among the candidates that meet every budget
            -> ``deploy/`` (the static model, its tokenizer and info, ready
            for predict.py), ``report.md``/``report.png``/``decision.json``

Rerunning the same command resumes after the last finished stage (and OFA
from its last checkpoint).  The decision is recomputed from the measured
table on every run: a changed budget re-decides without training or
measuring again (a changed --batch_size / --max_seq_length measures again).
The teacher itself is a candidate (the model you came with, unchanged).

Exit codes: 0 a model was chosen; 1 no candidate meets the budgets (which
budget failed by how much and the closest candidate are printed; no
``deploy/`` is left); 2 bad input (one ``error:`` line, nothing written);
3 a stage failed (rerun to resume).
"""
import utils  # noqa: F401  (first: stack fixes before paddle is imported)

import argparse
import os
import shutil
import subprocess
import sys
import time

from utils import budget
from utils.errors import UserError, run_main
from utils.jsonfile import read_json
from utils.publish import publish_dir, staging_dir, write_json_atomic
from utils.tasks import OWN_DATA_FLAGS, add_task_args, check_task_args

HERE = os.path.dirname(os.path.abspath(__file__))
NER_TASKS = ("msra", "msra_ner")
OWN_FILES = ("train_file", "dev_file", "test_file")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_name_or_path", required=True, help="the fine-tuned teacher (a model directory)")
    p.add_argument("--output_dir", required=True, help="every stage's output; a rerun resumes here")
    add_task_args(p)
    b = p.add_argument_group("budgets (at least one)")
    b.add_argument("--latency_budget_ms", type=float, default=None,
                   help="median latency at --batch_size x --max_seq_length, measured here with benchmark.py")
    b.add_argument("--latency_budget_ratio", type=float, default=None,
                   help="instead of ms: a fraction of the teacher's latency measured in the same benchmark")
    b.add_argument("--size_budget_mb", type=float, default=None, help="static model files, MB (10^6 bytes)")
    b.add_argument("--max_metric_drop", type=float, default=None,
                   help="dev metric at most this far below the teacher's (absolute: 0.01 = 1 point)")
    b.add_argument("--batch_size", type=int, default=1, help="batch size of the latency benchmark")
    b.add_argument("--max_seq_length", type=int, default=128, help="tokens per example of the latency benchmark")
    b.add_argument("--threads", type=int, default=2, help="CPU threads of the benchmark")
    b.add_argument("--repeats", type=int, default=30, help="timed runs per candidate")
    g = p.add_argument_group("the grid and its training (OFA distillation)")
    g.add_argument("--width_mult_list", nargs="+", default=["1.0", "3/4", "1/2"])
    g.add_argument("--depth_mult_list", nargs="+", default=["1.0"])
    g.add_argument("--train_batch_size", type=int, default=32)
    g.add_argument("--train_max_seq_length", type=int, default=128, help="also the exported models' length")
    g.add_argument("--learning_rate", type=float, default=1e-4)
    g.add_argument("--num_train_epochs", type=float, default=3.0)
    g.add_argument("--max_steps", type=int, default=-1, help="if > 0: OFA steps (overrides epochs)")
    g.add_argument("--warmup_proportion", type=float, default=0.1)
    g.add_argument("--save_steps", type=int, default=100, help="evaluate and checkpoint every N steps")
    g.add_argument("--logging_steps", type=int, default=10)
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--data_aug", action="store_true", help="also distil on DATA_DIR/TASK/train_aug.tsv")
    g.add_argument("--device", default="cpu", choices=["cpu", "gpu"], help="device of training")
    q = p.add_argument_group("INT8")
    q.add_argument("--int8", action="store_true", help="also post-training INT8 of every candidate (quantize.py)")
    q.add_argument("--int8_max_drop", type=float, default=0.015, help="quantize.py --max_drop (its guard)")
    q.add_argument("--int8_batch_num", type=int, default=8, help="quantize.py --batch_num (calibration)")
    q.add_argument("--int8_qat_steps", type=int, default=0,
                   help="quantize.py --qat_steps: quantization-aware distillation of each candidate's dynamic "
                        "sub-model before its INT8 (0 = plain post-training quantization)")
    # test hooks: a kill after a stage, or inside OFA after the checkpoint of a step
    p.add_argument("--debug_exit_after_stage", default=None, help=argparse.SUPPRESS)
    p.add_argument("--debug_ofa_exit_after_step", type=int, default=-1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    check_args(args)
    return args


def check_args(args):
    """Every check that needs no library: before --output_dir is touched."""
    budget.check_budgets(budget.Budgets.from_args(args), args.batch_size)
    for flag in ("threads", "repeats", "train_batch_size", "save_steps", "logging_steps", "int8_batch_num"):
        if getattr(args, flag) < 1:
            raise UserError(f"--{flag} must be positive, got {getattr(args, flag)}")
    if args.int8_qat_steps < 0:
        raise UserError(f"--int8_qat_steps must be >= 0, got {args.int8_qat_steps}")
    if args.int8_qat_steps and not args.int8:
        raise UserError("--int8_qat_steps tunes the weights before INT8: give --int8 as well")
    if args.repeats < 3:
        raise UserError(f"--repeats must be at least 3, got {args.repeats}")
    ner, own_data = is_ner(args.task_name), has_own_data(args)
    if not ner:
        check_task_args(args)
    elif not args.data_dir or not os.path.isdir(args.data_dir):
        raise UserError(f"--data_dir: '{args.data_dir}' is not a directory (the MSRA files)")
    if args.data_dir and not os.path.isdir(args.data_dir):
        raise UserError(f"--data_dir: '{args.data_dir}' is not a directory")
    for f in OWN_FILES:
        if getattr(args, f, None) and not os.path.isfile(getattr(args, f)):
            raise UserError(f"--{f}: {getattr(args, f)} does not exist")
    if args.int8 and own_data:
        raise UserError("--int8: quantize.py calibrates and evaluates on a GLUE or NER --data_dir; with own data "
                        "(--train_file) leave out --int8")
    if args.data_aug and (ner or own_data):
        raise UserError("--data_aug reads DATA_DIR/TASK/train_aug.tsv of a GLUE task")
    cfg_path = os.path.join(args.model_name_or_path, "config.json")
    if not os.path.isfile(cfg_path):
        raise UserError(f"--model_name_or_path {args.model_name_or_path}: no config.json (give the fine-tuned "
                        f"model's directory)")
    max_pos = read_json(cfg_path, want_object=True).get("max_position_embeddings")
    budget.check_seq_len(args.max_seq_length, max_pos)
    budget.check_seq_len(args.train_max_seq_length, max_pos, "--train_max_seq_length")
    budget.check_output_dir(args.output_dir, identity(args))


def is_ner(task_name):
    return (task_name or "").lower() in NER_TASKS


def has_own_data(args):
    return any(getattr(args, f, None) is not None for f in OWN_DATA_FLAGS)


def identity(args):
    """What makes two runs the same run: teacher, data, grid and training.
    Budgets, the benchmark's shape and --int8 are not part of it."""
    ident = {"teacher": os.path.abspath(args.model_name_or_path), "task_name": args.task_name,
             "data_dir": args.data_dir and os.path.abspath(args.data_dir),
             "widths": list(args.width_mult_list), "depths": list(args.depth_mult_list), "data_aug": args.data_aug}
    for f in OWN_DATA_FLAGS:
        v = getattr(args, f, None)
        ident[f] = os.path.abspath(v) if v and f in OWN_FILES else v
    ident["training"] = {k: getattr(args, k) for k in ("train_batch_size", "train_max_seq_length", "learning_rate",
                                                       "num_train_epochs", "max_steps", "warmup_proportion",
                                                       "save_steps", "seed")}
    return ident


# --------------------------------------------------------------------------- running the stages
class Run:
    def __init__(self, args):
        self.args, self.out = args, os.path.abspath(args.output_dir)
        self.stages = budget.Stages(self.out)
        self.plan = ["ofa", "export"] + (["int8"] if args.int8 else []) + ["measure", "decide"]
        self.t0 = time.time()

    def progress(self, name, what):
        i = self.plan.index(name)
        el = time.time() - self.t0
        rest = ", ".join(self.plan[i + 1:]) or "nothing"
        print(f"\n===== [compress {i + 1}/{len(self.plan)}] {name}: {what} (elapsed {el // 60:.0f} min "
              f"{el % 60:02.0f} s; remaining: {rest}) =====", flush=True)

    def script(self, script, *args, capture_err=False):
        cmd = [sys.executable, os.path.join(HERE, script)] + [str(a) for a in args]
        print("$ " + " ".join(cmd[1:]), flush=True)
        t = time.time()
        # in the user's working directory: relative paths mean the same to every stage
        r = subprocess.run(cmd, stderr=subprocess.PIPE if capture_err else None, text=True)
        if capture_err and r.stderr:
            sys.stderr.write(r.stderr)
        print(f"({script}: exit {r.returncode}, {time.time() - t:.0f} s)", flush=True)
        return r

    def require(self, r, what):
        if r.returncode != 0:
            print(f"error: {what} failed (exit {r.returncode}); fix the cause and rerun the same command to resume "
                  f"from this stage", file=sys.stderr, flush=True)
            sys.exit(3)

    def mark(self, name, record):
        self.stages.mark(name, record)
        if self.args.debug_exit_after_stage == name:
            sys.stdout.flush()
            os._exit(3)
        return record

    def task_flags(self):
        a = self.args
        flags = []
        for f in ("task_name", "data_dir") + tuple(OWN_DATA_FLAGS):
            v = getattr(a, f, None)
            if v is not None:
                flags += [f"--{f}"] + (list(v) if isinstance(v, list) else [v])
        return flags

    def check_flags(self):
        a = self.args
        return ["--data_dir", a.data_dir] if a.data_dir else (["--dev_file", a.dev_file] if a.dev_file else [])


def stage_ofa(run):
    a, ofa_dir = run.args, os.path.join(run.out, "ofa")
    done = run.stages.get("ofa")
    if done:
        run.progress("ofa", "finished earlier, skipped")
        return done
    resume = os.path.isfile(os.path.join(ofa_dir, "checkpoints", "latest"))
    run.progress("ofa", f"widths {' '.join(a.width_mult_list)} x depths {' '.join(a.depth_mult_list)}"
                 + (" (resuming from its last checkpoint)" if resume else ""))
    steps = ["--max_steps", a.max_steps] if a.max_steps > 0 else ["--num_train_epochs", a.num_train_epochs]
    kill = ["--debug_exit_after_step", a.debug_ofa_exit_after_step] if a.debug_ofa_exit_after_step > 0 else []
    r = run.script("run_msra_ner_ofa.py" if is_ner(a.task_name) else "run_glue_ofa.py", "--model_name_or_path",
                   a.model_name_or_path, *run.task_flags(), "--output_dir", ofa_dir,
                   "--width_mult_list", *a.width_mult_list, "--depth_mult_list", *a.depth_mult_list,
                   "--max_seq_length", a.train_max_seq_length, "--batch_size", a.train_batch_size,
                   "--learning_rate", a.learning_rate, *steps, "--warmup_proportion", a.warmup_proportion,
                   "--save_steps", a.save_steps, "--logging_steps", a.logging_steps, "--seed", a.seed,
                   "--device", a.device, *(["--data_aug"] if a.data_aug else []), *kill,
                   "--resume" if resume else "--overwrite_output_dir")
    run.require(r, "the OFA stage")
    table = read_json(os.path.join(ofa_dir, "all_results.json"))
    from utils.report import metric_name_of
    subnets = [{"name": sub_name(row), "dir": os.path.join(ofa_dir, row["dir"]), "width": row["width"],
                "depth": row.get("depth") or 1.0, "metric": row["score"]} for row in table["rows"]]
    return run.mark("ofa", {"teacher_metric": table["teacher_score"], "metric_name": metric_name_of(table),
                            "subnets": subnets})


def sub_name(row):
    depth = row.get("depth") or 1.0
    return f"w{row['width']:.4f}" + (f"_d{depth:.4f}" if depth < 1 else "")


def stage_export(run, ofa):
    a = run.args
    todo = [{"name": "teacher", "dir": os.path.abspath(a.model_name_or_path), "width": 1.0, "depth": 1.0,
             "metric": ofa["teacher_metric"]}] + ofa["subnets"]
    cands = []
    for n, c in enumerate(todo):
        done = run.stages.get(f"export_{c['name']}")
        if done:
            run.progress("export", f"{c['name']} ({n + 1}/{len(todo)}) finished earlier, skipped")
            cands.append(done)
            continue
        run.progress("export", f"{c['name']} ({n + 1}/{len(todo)})")
        base = os.path.join(run.out, "candidates", c["name"])
        prefix = os.path.join(base, "static", "model")
        r = run.script("export_model.py", "--model_name_or_path", c["dir"], "--width_mult", repr(c["width"]),
                       "--depth_mult", repr(c["depth"]), "--sub_model_output_dir", os.path.join(base, "dynamic"),
                       "--static_sub_model", prefix, "--max_seq_length", a.train_max_seq_length, *run.check_flags())
        run.require(r, f"export of {c['name']}")
        info = read_json(os.path.join(base, "dynamic", "export_info.json"))
        cands.append(run.mark(f"export_{c['name']}", dict(
            c, precision="fp32", prefix=prefix, params=info["params_after"], heads=info["heads_per_layer"][0],
            ffn=info["ffn_per_layer"][0], size_mb=budget.model_mb(prefix))))
    return cands


def stage_int8(run, fp32):
    a, out = run.args, []
    for n, c in enumerate(fp32):
        name = c["name"] + "_int8"
        key = f"int8_{name}" + (f"_qat{a.int8_qat_steps}" if a.int8_qat_steps else "")   # a new recipe: redone
        done = run.stages.get(key)
        if done:
            run.progress("int8", f"{name} ({n + 1}/{len(fp32)}) finished earlier, skipped")
        else:
            run.progress("int8", f"{name} ({n + 1}/{len(fp32)})")
            prefix = os.path.join(run.out, "candidates", name, "static", "model")
            qat = []
            if a.int8_qat_steps:   # the dynamic sub-model export_model.py wrote beside the FP32 static one
                qat = ["--qat_steps", a.int8_qat_steps, "--qat_model",   # --resume: an interrupted tuning continues
                       os.path.join(run.out, "candidates", c["name"], "dynamic"), "--resume"]
            r = run.script("quantize.py", "--model_prefix", c["prefix"], "--output_prefix", prefix,
                           "--data_dir", a.data_dir, "--max_drop", a.int8_max_drop, "--batch_num", a.int8_batch_num,
                           "--threads", a.threads, *qat, capture_err=True)
            if r.returncode == 1:   # the accuracy guard refused it: recorded, not retried
                last = (r.stderr or "").strip().splitlines()[-1:] or ["refused"]
                done = run.mark(key, {"name": name, "refused": last[0]})
            else:
                run.require(r, f"INT8 of {c['name']}")
                q = read_json(prefix + ".info.json")["quantization"]
                done = run.mark(key, dict(
                    c, name=name, precision="int8", prefix=prefix, size_mb=budget.model_mb(prefix),
                    metric=c["metric"] + (q["int8"] - q["fp32"]), int8_change=q["int8"] - q["fp32"]))
        if done.get("refused"):
            print(f"{name}: no candidate ({done['refused']})", flush=True)
        else:
            out.append(done)
    return out


def stage_measure(run, cands):
    a = run.args
    key = f"measure_b{a.batch_size}_l{a.max_seq_length}"
    names = [c["name"] for c in cands]
    done = run.stages.get(key)
    if done and done["names"] == names:
        run.progress("measure", f"batch {a.batch_size}, length {a.max_seq_length}: measured earlier, reused")
        return done["latency_ms"]
    run.progress("measure", f"{len(cands)} candidates at batch {a.batch_size}, length {a.max_seq_length}")
    path = os.path.join(run.out, "measure", f"b{a.batch_size}_l{a.max_seq_length}")
    r = run.script("benchmark.py", "--models", *[c["prefix"] for c in cands], "--names", *names, "--batch_sizes",
                   a.batch_size, "--max_seq_length", a.max_seq_length, "--threads", a.threads,
                   "--repeats", a.repeats, "--output", path)
    run.require(r, "the latency benchmark")
    rows = read_json(path + ".json")["rows"]
    lat = {r["model"]: r["median_ms"] for r in rows if r["batch_size"] == a.batch_size}
    return run.mark(key, {"names": names, "latency_ms": lat, "benchmark": path + ".json"})["latency_ms"]


def stage_decide(run, ofa, cands):
    """The decision (recomputed every run), the report, and deploy/."""
    from utils.report import write_report
    a = run.args
    run.progress("decide", "pick under the budgets")
    teacher = next(c for c in cands if c["name"] == "teacher")
    lims = budget.limits(budget.Budgets.from_args(a), teacher["latency_ms"])
    decision = budget.decide(cands, lims, ofa["teacher_metric"])
    budget_text = budget.describe_budgets(lims, a.batch_size, a.max_seq_length, a.latency_budget_ratio)
    metric = ofa["metric_name"]
    write_json_atomic(os.path.join(run.out, "decision.json"), {"budgets": budget_text, "candidates": cands,
                                                              **decision})
    rows = [dict(c, score=c["metric"], latency_ms={str(a.batch_size): c["latency_ms"]}, label=c["name"],
                 meets=budget.verdict(decision, c["name"])) for c in cands]
    t_row = next(r for r in rows if r["name"] == "teacher")
    table = budget.format_table(cands, decision, metric)
    notes = [f"Latency: median of {a.repeats} runs of benchmark.py ({a.threads} threads) at batch {a.batch_size}, "
             f"length {a.max_seq_length}; size: the static model's .pdmodel + .pdiparams; INT8 metric: the "
             f"FP32 dev metric + quantize.py's measured change. Candidates and decision: decision.json."]
    paths = write_report(run.out, [r for r in rows if r is not t_row], t_row, metric_name=metric,
                         batch_size=a.batch_size, title="compress.py: candidates under the budget", notes=notes,
                         budget={"text": budget_text, **lims}, chosen=decision["chosen"] or "")
    print("\n".join(table), flush=True)
    print(f"budgets: {budget_text}\nreport: {paths['md']}, {paths['png']}", flush=True)
    deploy = os.path.join(run.out, "deploy")
    if decision["chosen"] is None:
        if os.path.isdir(deploy):   # an earlier decision's: it does not meet these budgets
            shutil.rmtree(deploy)
            print(f"removed {deploy} (an earlier run's choice, which does not meet these budgets)", flush=True)
        raise SystemExit("error: no candidate meets the budgets; closest: " + decision["closest"] + "\n  "
                         + "\n  ".join(budget.describe_failure(decision, a.latency_budget_ratio)))
    chosen = next(c for c in cands if c["name"] == decision["chosen"])
    write_deploy(chosen, deploy, {"budgets": budget_text, "chosen": chosen, "teacher_metric": ofa["teacher_metric"]})
    summary(a, chosen, teacher, lims, metric, deploy)
    return decision


def write_deploy(chosen, deploy, record):
    """Copy the chosen static model (program, parameters, info, tokenizer)
    into deploy/ (staged beside it, then published)."""
    from utils.inference import TOKENIZER_SUFFIX
    src_dir, base = os.path.split(chosen["prefix"])
    with staging_dir(deploy) as tmp:
        for name in os.listdir(src_dir):
            if name.startswith(base + ".") or name == base + TOKENIZER_SUFFIX:
                src = os.path.join(src_dir, name)
                (shutil.copytree if os.path.isdir(src) else shutil.copy2)(src, os.path.join(tmp, name))
        write_json_atomic(os.path.join(tmp, "choice.json"), record)
        publish_dir(tmp, deploy)


def summary(a, chosen, teacher, lims, metric, deploy):
    """The final lines: the chosen model, its metric against the teacher's,
    its latency and size against the budgets."""
    def budget_of(key, spec, unit=""):
        return f"budget {lims[key]:{spec}}{unit}" if key in lims else "no budget"
    drop = teacher["metric"] - chosen["metric"]
    print(f"\nchosen: {chosen['name']} ({chosen['precision']}, width {chosen['width']:.4f}, depth "
          f"{chosen['depth']:.4f}) -> {os.path.join(deploy, os.path.basename(chosen['prefix']))}")
    print(f"  {metric} {chosen['metric']:.4f}, teacher {teacher['metric']:.4f}: {drop:.4f} below "
          f"({budget_of('max_drop', 'g')})")
    print(f"  latency {chosen['latency_ms']:.2f} ms at batch {a.batch_size}, length {a.max_seq_length} "
          f"({budget_of('latency_ms', '.2f', ' ms')}); teacher {teacher['latency_ms']:.2f} ms")
    print(f"  size {chosen['size_mb']:.2f} MB ({budget_of('size_mb', 'g', ' MB')}); "
          f"teacher {teacher['size_mb']:.2f} MB", flush=True)


def main(argv=None):
    args = parse_args(argv)
    run = Run(args)
    budget.write_run_file(run.out, identity(args))
    ofa = stage_ofa(run)
    cands = stage_export(run, ofa)
    if args.int8:
        cands += stage_int8(run, cands)
    latency = stage_measure(run, cands)
    for c in cands:
        c["latency_ms"] = latency[c["name"]]
    return stage_decide(run, ofa, cands)


if __name__ == "__main__":
    run_main(main)
