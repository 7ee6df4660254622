"""The environment manifest: secrets kept out, the git commit read without git."""

from __future__ import annotations

import subprocess
from pathlib import Path

from harness.envfilter import env_manifest
from harness.manifest import git_commit


def test_env_manifest_keeps_allowed_values_and_only_names_of_the_rest() -> None:
    env = {"PATH": "/bin", "GITHUB_TOKEN": "t", "KAGGLE_KEY": "k", "MY_API_KEY": "k", "WANDB_API_KEY": "k",
           "HTTPS_PROXY": "http://user:pass@proxy:3128", "HTTP_PROXY": "http://proxy:3128", "SSH_AUTH_SOCK": "/s",
           "OMP_NUM_THREADS": "2", "PYTHONPATH": "https://u:p@x/", "TORCH_HOME": "/t"}
    assert env_manifest(env) == {"env": {"OMP_NUM_THREADS": "2", "TORCH_HOME": "/t"},
                                 "env_names": ["GITHUB_TOKEN", "HTTPS_PROXY", "HTTP_PROXY", "KAGGLE_KEY", "MY_API_KEY",
                                               "PATH", "PYTHONPATH", "SSH_AUTH_SOCK", "WANDB_API_KEY"]}


def test_git_commit_is_read_without_git(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "f").write_text("x")
    subprocess.run(["git", "-C", str(repo), "add", "f"], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "x"],
                   check=True)
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    (repo / "sub").mkdir()
    assert git_commit(repo / "sub") == head
    subprocess.run(["git", "-C", str(repo), "pack-refs", "--all"], check=True)
    assert git_commit(repo) == head
    assert git_commit(tmp_path) is None
