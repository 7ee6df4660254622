"""The one definition of an experiment's code (harness/code.py), on real folders."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from harness.code import code_digest, code_digests, code_files, combine_digests, differing_files, is_never_code


def _write(root: Path, rel: str, text: str = "x") -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _experiment(root: Path) -> Path:
    for rel, text in (("baseline.py", "print('b')\n"), ("optimization.py", "print('o')\n"),
                      ("experiment_config.json", json.dumps({"data_dir": "input"})),
                      ("src/data/loader.py", "LOAD = 1\n"), ("Dockerfile", "FROM x\n")):
        _write(root, rel, text)
    return root


def test_outputs_logs_caches_data_and_results_are_never_code(tmp_path):
    root = _experiment(tmp_path)
    for rel in ("notes.log", "sub/train.log", "outputs/model.pt", "checkpoints/e1.ckpt", "wandb/run/x.json",
                "lightning_logs/v0/hparams.yaml", "mlruns/0/meta.yaml", "__pycache__/b.cpython-311.pyc",
                "src/__pycache__/m.pyc", ".ipynb_checkpoints/nb.ipynb", "results/baseline/r.json",
                "data/train.csv", "input/train.csv", ".git/HEAD", "src/.DS_Store"):
        _write(tmp_path, rel)
    (tmp_path / "link.py").symlink_to(tmp_path / "baseline.py")
    assert code_files(root) == ["Dockerfile", "baseline.py", "experiment_config.json", "optimization.py",
                                "src/data/loader.py"]  # a nested data/ package is code; the config's input/ is not


def test_dockerignore_excludes_and_cannot_bring_outputs_back(tmp_path):
    root = _experiment(tmp_path)
    _write(root, "scratch.tmp")
    _write(root, "outputs/keep.txt")
    _write(root, "notes.log")
    _write(root, ".dockerignore", "# comment\n*.tmp\n!outputs/keep.txt\n!notes.log\nDockerfile\n")
    files = code_files(root)
    assert "scratch.tmp" not in files
    assert "Dockerfile" in files  # Docker always sends the Dockerfile, whatever .dockerignore says
    assert "outputs/keep.txt" not in files and "notes.log" not in files
    assert ".dockerignore" in files


def test_digests_are_sha256_of_bytes_and_the_digest_is_stable(tmp_path):
    root = _experiment(tmp_path)
    digests = code_digests(root)
    assert list(digests) == code_files(root)
    assert digests["baseline.py"] == hashlib.sha256(b"print('b')\n").hexdigest()
    before = code_digest(root)
    assert len(before) == 64 and before == code_digest(root)
    _write(root, "notes.log", "epoch 1 done\n")  # the case: a log between two runs
    _write(root, "outputs/pred.csv", "1,2\n")
    assert code_digest(root) == before
    _write(root, "baseline.py", "print('b2')\n")
    after = code_digests(root)
    assert code_digest(root) != before
    assert differing_files(digests, after) == ["baseline.py"]
    (root / "optimization.py").rename(root / "opt2.py")  # a rename changes the code too
    assert code_digest(root) != combine_digests(after)
    assert differing_files(after, code_digests(root)) == ["opt2.py", "optimization.py"]


def test_never_code_rules():
    assert is_never_code("data/x.csv") and is_never_code("train.log") and is_never_code("a/b/c.log")
    assert not is_never_code("src/data/x.py") and not is_never_code("outputs.py")
    assert is_never_code("raw/in/x.csv", data_dir="raw/in") and not is_never_code("raw/inx.csv", data_dir="raw/in")


def test_scaffolded_dockerignore_lists_the_usual_outputs(tmp_path):
    from harness.scaffold import create_experiment

    path = create_experiment("codedemo", "pytorch", root=tmp_path)
    lines = (path / ".dockerignore").read_text().split()
    for pattern in ("*.log", "**/*.log", "outputs/", "checkpoints/", "wandb/", "lightning_logs/", "mlruns/",
                    "__pycache__/", ".ipynb_checkpoints/", "results/", "data/"):
        assert pattern in lines, pattern
    assert code_files(path) == sorted([".dockerignore", ".gitignore", "Dockerfile", "README.md", "baseline.py",
                                       "experiment_config.json", "optimization.py", "requirements.txt"])
