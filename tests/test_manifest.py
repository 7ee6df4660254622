"""The environment manifest: secrets kept out, the git commit read without git."""

from __future__ import annotations

import subprocess
from pathlib import Path

from harness.manifest import filtered_env, git_commit


def test_filtered_env_drops_secret_names_and_url_passwords() -> None:
    env = {"PATH": "/bin", "GITHUB_TOKEN": "t", "KAGGLE_KEY": "k", "MY_API_KEY": "k", "WANDB_API_KEY": "k",
           "HTTPS_PROXY": "http://user:pass@proxy:3128", "HTTP_PROXY": "http://proxy:3128", "SSH_AUTH_SOCK": "/s"}
    assert filtered_env(env) == {"HTTP_PROXY": "http://proxy:3128", "PATH": "/bin"}


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
