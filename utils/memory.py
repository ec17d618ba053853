"""Resident memory of a process, and probing it in a fresh child process.

Both the load-memory report of prune.py (utils/model_report.py) and the
peak-memory column of benchmark.py measure in a child process: the parent
has already grown by whatever it loaded before, and getrusage's peak
(``ru_maxrss``) survives a fork, so only a fresh ``exec`` starts from zero.
The child prints one line ``TAG {json}``; :func:`run_probe` runs it and
returns the parsed JSON.  No paddle here.
"""
import json
import os
import resource
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STATUS = "/proc/self/status"


def status_kb(key):
    """A ``kB`` field of /proc/self/status (``VmRSS``, ``VmHWM``), or None."""
    try:
        with open(STATUS) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def has_status():
    return os.path.isfile(STATUS)


def peak_rss_mb():
    """Peak resident memory of this process in MB: VmHWM of /proc/self/status
    (reset by exec; getrusage's ru_maxrss is not: a child forked from a big
    process inherits the parent's peak), else ru_maxrss."""
    kb = status_kb("VmHWM")
    if kb is None:
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0


def emit(tag, result):
    """Child side: print the result line the parent looks for."""
    print(f"{tag} " + json.dumps(result), flush=True)


def _env():
    return dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))


def start_probe(cmd):
    """Start ``[python] + cmd`` in the repository root with the suite on the path."""
    return subprocess.Popen([sys.executable] + list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env(), cwd=REPO_ROOT)


def finish_probe(proc, tag, timeout=None):
    """(result dict or None, return code, stderr) of a probe started by :func:`start_probe`."""
    stdout, stderr = proc.communicate(timeout=timeout)
    lines = [l for l in stdout.splitlines() if l.startswith(tag + " ")]
    if proc.returncode != 0 or not lines:
        return None, proc.returncode, stderr
    return json.loads(lines[-1][len(tag) + 1:]), proc.returncode, stderr


def run_probe(cmd, tag, timeout=None):
    """Run one probe to the end: (result or None, return code, stderr)."""
    return finish_probe(start_probe(cmd), tag, timeout)
