"""utils/publish.py: stage, then publish -- a failed writer leaves the target as it was."""
import json
import os

import pytest

from utils.publish import publish_dir, publish_prefix, staged_file, staging_dir, write_json_atomic


def _tree(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_failed_writer_leaves_target_and_no_staging(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with staging_dir(out) as tmp:
            open(os.path.join(tmp, "half.bin"), "w").write("x")
            raise RuntimeError("writer failed")
    assert (out / "keep.txt").read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["out"]          # no staging directory left behind


def test_publish_dir_replaces_whole_directory(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    with staging_dir(out) as tmp:
        open(os.path.join(tmp, "model.safetensors"), "w").write("new")
        publish_dir(tmp, out)
    assert _tree(out) == ["model.safetensors"]
    assert sorted(os.listdir(tmp_path)) == ["out"]
    assert oct(os.stat(out).st_mode & 0o777) != oct(0o700)   # not mkdtemp's private mode


def test_publish_prefix_moves_only_the_prefix_files(tmp_path):
    dst = tmp_path / "deploy"
    dst.mkdir()
    (dst / "other.txt").write_text("user file")
    with staging_dir(dst / "int8") as tmp:
        for name in ("model.json", "model.pdiparams", "model.info.json", "unrelated.log"):
            open(os.path.join(tmp, name), "w").write(name)
        os.mkdir(os.path.join(tmp, "model.tokenizer"))
        open(os.path.join(tmp, "model.tokenizer", "vocab.txt"), "w").write("v")
        done = publish_prefix(os.path.join(tmp, "model"), dst / "int8")
    assert sorted(os.path.basename(p) for p in done) == [
        "int8.info.json", "int8.json", "int8.pdiparams", "int8.tokenizer"]
    assert _tree(dst) == ["int8.info.json", "int8.json", "int8.pdiparams", "int8.tokenizer/vocab.txt", "other.txt"]


def test_staged_file_and_json(tmp_path):
    path = tmp_path / "r.json"
    write_json_atomic(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
    with pytest.raises(ValueError):
        with staged_file(path) as tmp:
            open(tmp, "w").write("{broken")
            raise ValueError
    assert json.loads(path.read_text()) == {"a": 1}
    assert sorted(os.listdir(tmp_path)) == ["r.json"]
