"""Bad inputs, kills and collisions (issue 17), each run as a user would:
prints a Markdown table of case, exit code, message, what was written and
whether the victim directory is intact.  Tiny random BERT, about 1.5 minutes on 2 cores.

    python benchmarks/safety_matrix.py WORK_DIR      (WORK_DIR is emptied first)
"""
import json, os, pickle, shutil, socket, subprocess, sys  # noqa: E401
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "tests")]
import utils  # noqa: E402,F401
from helpers import write_tiny_bert, write_sst2  # noqa: E402
R = os.path.abspath(sys.argv[1])
shutil.rmtree(R, ignore_errors=True); os.makedirs(R)
bert = write_tiny_bert(f"{R}/bert"); write_sst2(f"{R}/glue/SST-2", n_train=96, n_dev=32)
G = ["--task_name", "SST-2", "--data_dir", f"{R}/glue", "--max_seq_length", "32", "--batch_size", "16",
     "--learning_rate", "2e-3", "--device", "cpu", "--max_steps", "12", "--save_steps", "6"]
rows = []

def tree(p):
    out = {}
    for r, _, fs in os.walk(p):
        for f in fs:
            out[os.path.relpath(os.path.join(r, f), p)] = open(os.path.join(r, f), "rb").read()
    return out

def run(script, *a):
    p = subprocess.run([sys.executable, f"{REPO}/{script}", *map(str, a)], capture_output=True, text=True,
                       cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO))
    msg = [l for l in p.stderr.splitlines() if l.startswith(("error:", "warning:")) or "WARNING" in l]
    msg += [l for l in p.stdout.splitlines() if "WARNING" in l]
    return p.returncode, (msg[-1] if msg else "")

def case(name, script, args, watch=None, victim=None, extra=None):
    before_w = set(tree(watch)) if watch and os.path.exists(watch) else set()
    before_v = tree(victim) if victim else None
    rc, msg = run(script, *args)
    after_w = set(tree(watch)) if watch and os.path.exists(watch) else set()
    written = sorted(after_w - before_w)
    damaged = "-" if victim is None else ("intact" if tree(victim) == before_v else "CHANGED")
    rows.append((name, rc, msg[:230], (", ".join(written[:4]) + (" ..." if len(written) > 4 else "")) or "nothing", damaged + (f"; {extra()}" if extra else "")))

# a fine-tuned run to use as source
rc, _ = run("run_glue.py", *G, "--model_name_or_path", bert, "--output_dir", f"{R}/ft"); assert rc == 0
class Boom:
    def __reduce__(self): return os.system, (f"touch {R}/MARKER",)
os.makedirs(f"{R}/evil"); [shutil.copy(f"{bert}/{f}", f"{R}/evil") for f in ("config.json", "vocab.txt")]
pickle.dump({"x": Boom()}, open(f"{R}/evil/model_state.pdparams", "wb"))
case("1 malicious model_state.pdparams (run_glue)", "run_glue.py", [*G, "--model_name_or_path", f"{R}/evil", "--output_dir", f"{R}/o1"], watch=R, extra=lambda: "marker " + ("CREATED" if os.path.exists(f"{R}/MARKER") else "absent"))
shutil.copytree(f"{R}/ft", f"{R}/ftk")
os.remove(f"{R}/ftk/.run.lock") if os.path.exists(f"{R}/ftk/.run.lock") else None
pickle.dump({"x": Boom()}, open(f"{R}/ftk/checkpoints/step-12/optimizer.pdopt", "wb"))
case("1 malicious optimizer.pdopt (--resume)", "run_glue.py", [*G, "--model_name_or_path", bert, "--output_dir", f"{R}/ftk", "--resume"], victim=f"{R}/ftk", extra=lambda: "marker " + ("CREATED" if os.path.exists(f"{R}/MARKER") else "absent"))
open(f"{R}/ft/notes.txt", "w").write("mine\n")
open(f"{R}/t.txt", "w").write("good w1\n")
case("2 export --sub_model_output_dir = run holding the source", "export_model.py", ["--model_name_or_path", f"{R}/ft/best", "--sub_model_output_dir", f"{R}/ft", "--check_text", f"{R}/t.txt"], victim=f"{R}/ft")
case("2 prune --output_dir above the source", "prune.py", ["--model_name_or_path", f"{R}/ft/best", "--output_dir", R, "--prune_vocab", "--vocab_texts", f"{R}/t.txt"], victim=R)
sleeper = subprocess.Popen(["sleep", "120"])
os.makedirs(f"{R}/busy"); json.dump({"pid": sleeper.pid, "host": socket.gethostname(), "started": "now"}, open(f"{R}/busy/.run.lock", "w"))
case("3 second run into a locked dir (live pid)", "run_glue.py", [*G, "--model_name_or_path", bert, "--output_dir", f"{R}/busy"], watch=f"{R}/busy", victim=f"{R}/busy")
case("3 same, with --overwrite_output_dir", "run_glue.py", [*G, "--model_name_or_path", bert, "--output_dir", f"{R}/busy", "--overwrite_output_dir"], watch=f"{R}/busy", victim=f"{R}/busy")
sleeper.kill(); sleeper.wait()
case("3 stale lock (dead pid), no flag", "run_glue.py", [*G, "--model_name_or_path", bert, "--output_dir", f"{R}/busy"], watch=f"{R}/busy", victim=f"{R}/busy")
case("3 stale lock, --resume (takes over)", "run_glue.py", [*G, "--model_name_or_path", bert, "--output_dir", f"{R}/busy", "--resume"], watch=f"{R}/busy")
shutil.copytree(f"{R}/ft", f"{R}/ow")
case("4 --overwrite_output_dir (--max_steps 6)", "run_glue.py", [*G[:-4], "--max_steps", "6", "--save_steps", "6", "--model_name_or_path", bert, "--output_dir", f"{R}/ow", "--overwrite_output_dir"], extra=lambda: f"results steps {[r['step'] for r in json.load(open(f'{R}/ow/results.json'))]}, notes.txt {'kept' if os.path.exists(f'{R}/ow/notes.txt') else 'GONE'}")
shutil.rmtree(f"{R}/ow/checkpoints")
case("4 best/ + results.json, no checkpoints, no flag", "run_glue.py", [*G, "--model_name_or_path", bert, "--output_dir", f"{R}/ow"], victim=f"{R}/ow")
rc, _ = run("run_glue.py", *G, "--model_name_or_path", bert, "--output_dir", f"{R}/cut", "--debug_exit_before_checkpoint", "12")
rows.append(("5 kill between eval at step 12 and its checkpoint", rc, "(os._exit(3): test hook)", "results.json steps " + str([r["step"] for r in json.load(open(f"{R}/cut/results.json"))]), "-"))
case("8 next stage on the killed run's best/ (export)", "export_model.py", ["--model_name_or_path", f"{R}/cut/best", "--sub_model_output_dir", f"{R}/exp8", "--check_text", f"{R}/t.txt"], watch=f"{R}/exp8")
case("5 --resume after that kill", "run_glue.py", [*G, "--model_name_or_path", bert, "--output_dir", f"{R}/cut", "--resume"], extra=lambda: "results.json " + ("== uninterrupted, byte for byte" if open(f"{R}/cut/results.json", "rb").read() == open(f"{R}/ft/results.json", "rb").read() else "DIFFERS"))
case("6 --max_seq_length 100 > 64 positions", "run_glue.py", [*G, "--model_name_or_path", bert, "--output_dir", f"{R}/o6", "--max_seq_length", "100"], watch=f"{R}/o6")
open(f"{R}/afile", "w").write("x")
case("7 --output_dir is an existing file", "run_glue.py", [*G, "--model_name_or_path", bert, "--output_dir", f"{R}/afile"], victim=f"{R}/ft")
case("7 --output_dir below a file", "run_glue.py", [*G, "--model_name_or_path", bert, "--output_dir", f"{R}/afile/sub"], victim=f"{R}/ft")
rc, _ = run("export_model.py", "--model_name_or_path", f"{R}/ft/best", "--sub_model_output_dir", f"{R}/exp/dyn", "--static_sub_model", f"{R}/exp/st/model", "--check_text", f"{R}/t.txt", "--max_seq_length", "16"); assert rc == 0
open(f"{R}/latin1.txt", "wb").write("good w1\nna\xefve\n".encode("latin-1"))
case("7 predict.py non-UTF-8 input", "predict.py", ["--model_prefix", f"{R}/exp/st/model", "--input_file", f"{R}/latin1.txt", "--output_file", f"{R}/p7/pred.tsv"], watch=R)
shutil.copytree(f"{R}/exp/st", f"{R}/bad"); d = open(f"{R}/bad/model.pdiparams", "rb").read(); open(f"{R}/bad/model.pdiparams", "wb").write(d[:100])
case("7 predict.py damaged .pdiparams", "predict.py", ["--model_prefix", f"{R}/bad/model", "--input_file", f"{R}/t.txt", "--output_file", f"{R}/p7/pred.tsv"], watch=R)
case("7 benchmark.py damaged .pdiparams", "benchmark.py", ["--models", f"{R}/bad/model", "--batch_sizes", "1", "--repeats", "3", "--max_seq_length", "16"], watch=R)
open(f"{R}/long.txt", "w").write("good w1\n" + " ".join(["w2"] * 40) + "\n")
case("7 predict.py long line", "predict.py", ["--model_prefix", f"{R}/exp/st/model", "--input_file", f"{R}/long.txt", "--output_file", f"{R}/p7/pred.tsv"], watch=f"{R}/p7")
print("| case | exit | message (last error/warning line) | written | damaged |\n| --- | --- | --- | --- | --- |")
for r in rows:
    print("| " + " | ".join(str(x).replace("|", "/") for x in r) + " |")
