"""``harness check`` against the real engine, and with an engine that does not answer."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from harness.check import CheckResult, run_checks
from harness.cli import cli


def _by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


@pytest.mark.docker
def test_checks_on_this_machine():
    checks = _by_name(run_checks())
    assert checks["docker engine"].status == "ok" and checks["docker engine"].required
    assert checks["docker engine"].detail.startswith("Docker ")
    assert checks["cgroups"].detail.startswith("host cgroup v")
    assert checks["python packages"].status == "ok"
    assert checks["disk: results"].status in ("ok", "warn")
    # No NVIDIA runtime on this machine: a warning with a fix, not a failure.
    assert checks["gpu runtime"].status in ("ok", "warn")
    if checks["gpu runtime"].status == "warn":
        assert "nvidia-ctk" in (checks["gpu runtime"].fix or "")


@pytest.mark.docker
def test_check_json_and_exit_code():
    result = CliRunner().invoke(cli, ["check", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert {"name", "status", "detail", "required", "fix", "ok"} <= set(rows[0])
    assert any(r["name"] == "framework images" for r in rows)


def test_no_engine_is_a_required_failure_with_a_fix(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")  # a real closed port
    checks = _by_name(run_checks())
    engine = checks["docker engine"]
    assert (engine.status, engine.required, engine.ok) == ("fail", True, False)
    assert "systemctl start docker" in (engine.fix or "")
    assert checks["framework images"].status == "info"
    result = CliRunner().invoke(cli, ["check"])
    assert result.exit_code == 1
    assert "docker engine *" in result.output and "FAIL" in result.output
    assert "1 required check(s) failed" in result.output


def test_container_commands_without_engine_print_one_line_and_the_fix(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")
    for args in (["ps"], ["clean", "--yes"], ["build", "--framework", "pytorch"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1, args
        assert result.output == ("Error: the Docker engine at tcp://127.0.0.1:9 does not answer (connection refused)\n"
                                 "hint: start the engine: sudo systemctl start docker (or run dockerd)\n"), args
