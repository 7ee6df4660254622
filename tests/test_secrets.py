"""No credential from the run's environment reaches results.json or events.jsonl, on either backend.

The manifest keeps the values of an allow-list of variables (CUDA_*, OMP_*, PYTHON*, HARNESS_*, LANG,
TZ, ...) that are not secret-looking, and only the names of the rest.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from runs import harness, one_error_line, own_pytorch_image, plan_state, write_experiment  # noqa: F401

SECRETS = {
    "MY_PASS": "pw-hunter2-a1",
    "DB_PASSWD": "pw-b2",
    "PWD_OF_ADMIN": "pw-c3",
    "APP_SECRET": "pw-d4",
    "HF_TOKEN": "pw-e5",
    "OPENAI_API_KEY": "pw-f6",
    "GCP_CREDENTIALS": "pw-g7",
    "HTTP_AUTH": "pw-h8",
    "URL_SIG": "pw-i9",
    # Secrets in values, under innocent names (also under allow-listed ones).
    "DATASET_URL": "https://acct.blob.core.windows.net/c/d.csv?sv=2020&sig=pw-j10",
    "MODEL_URL": "https://h.example/m.bin?token=pw-k11",
    "S3_LINK": "https://b.s3.amazonaws.com/k?X-Amz-Signature=pw-l12&X-Amz-Date=1",
    "MIRROR": "https://user:pw-m13@mirror.example/simple",
    "PYTHON_INDEX": "https://user:pw-n14@pypi.example/simple",
    "TF_KEY": "pw-o15",
}
ALLOWED = {"OMP_NUM_THREADS": "3", "TZ": "UTC", "LANG": "C.UTF-8", "PYTHONHASHSEED": "7"}
NAME_ONLY = {"SOME_SETTING": "plain-value-q17"}
SCRIPT = "print('ok', flush=True)\n"


def _check(exp: Path, values: dict[str, str]) -> None:
    run = plan_state(exp)["runs"][0]
    run_dir = exp / "results" / "baseline" / run["run_id"]
    for name in ("results.json", "events.jsonl", "stdout.log"):
        text = (run_dir / name).read_text()
        for secret in values.values():
            secret_part = secret.split("pw-")[1] if "pw-" in secret else secret
            assert "pw-" + secret_part not in text, f"{name} holds a secret"
        assert "plain-value-q17" not in text, f"{name} holds a value that is not on the allow-list"
    env = json.loads((run_dir / "results.json").read_text())["environment"]
    for name, value in ALLOWED.items():
        assert env["env"][name] == value
    assert "SOME_SETTING" in env["env_names"] and "MY_PASS" in env["env_names"]
    assert not set(env["env"]) & set(SECRETS), "a secret-looking variable kept its value"
    assert not set(env["env"]) & set(NAME_ONLY)


def test_local_run_records_no_secret(tmp_path: Path) -> None:
    exp = write_experiment(tmp_path / "exp", {"baseline": SCRIPT}, name="secretslocal")
    env = dict(os.environ, **SECRETS, **ALLOWED, **NAME_ONLY)
    proc = harness(["run", "baseline", "--backend", "local", "-e", str(exp)], env=env)
    one_error_line(proc.stdout)
    assert proc.returncode == 0, proc.stdout
    _check(exp, SECRETS)


@pytest.mark.docker
def test_docker_run_records_no_secret_baked_into_the_image(tmp_path: Path, own_pytorch_image: str) -> None:
    from conftest import _remove_experiment_images

    # The host's environment never enters a container; an image's ENV does (a token baked in).
    lines = "".join(f'ENV {k}="{v}"\n' for k, v in {**SECRETS, **ALLOWED, **NAME_ONLY}.items())
    dockerfile = ("ARG BASE_IMAGE=harness/pytorch:latest\nFROM ${BASE_IMAGE}\nWORKDIR /workspace\n"
                  + lines + "COPY . /workspace/\n")
    exp = write_experiment(tmp_path / "exp", {"baseline": SCRIPT}, name="secretsdocker", base_image=own_pytorch_image,
                           files={"Dockerfile": dockerfile})
    try:
        proc = harness(["run", "baseline", "--backend", "docker", "-e", str(exp)],
                       env=dict(os.environ, HOST_ONLY_TOKEN="pw-host-r18"))
        one_error_line(proc.stdout)
        assert proc.returncode == 0, proc.stdout
        _check(exp, {**SECRETS, "HOST_ONLY_TOKEN": "pw-host-r18"})
    finally:
        _remove_experiment_images(["secretsdocker"])


def test_the_filter_on_names_and_values() -> None:
    from harness.envfilter import env_manifest, is_secret

    for name, value in SECRETS.items():
        assert is_secret(name, value), name
    for name, value in {**ALLOWED, **NAME_ONLY, "PATH": "/usr/bin",
                        "URL": "https://example.com/a?b=c"}.items():
        assert not is_secret(name, value), name
    manifest = env_manifest({**SECRETS, **ALLOWED, **NAME_ONLY, "CUDA_VISIBLE_DEVICES": "0"})
    assert manifest["env"] == {**ALLOWED, "CUDA_VISIBLE_DEVICES": "0"}
    assert manifest["env_names"] == sorted({*SECRETS, *NAME_ONLY})
