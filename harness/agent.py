"""Supervise one mode's script: ``python -m harness.agent --mode M --results DIR -- python baseline.py``.

The container's entrypoint (and the local backend's). It samples resources into
``events.jsonl`` while the script runs as a child, forwards SIGINT / SIGTERM to it,
enforces ``--timeout``, and when the child ends writes ``results.json`` atomically:
``completed``, ``failed``, ``interrupted``, ``oom_killed`` or ``timeout``. The agent exits
with the child's exit code (128 + signal number for a signal) so that backends see it;
the authoritative status is in results.json.

A script that never imports ``harness.monitor`` still gets resource usage, wall time and
status. Nothing host-side is imported here (no click, docker, pydantic, matplotlib).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from harness import autoinstrument
from harness import env as envvars
from harness.fingerprint import take_from_env as take_fingerprint
from harness.hostload import HostLoadProbe
from harness.manifest import environment_manifest
from harness.monitor.events import EventWriter
from harness.monitor.process_tree import CONTAINER_CGROUP, CPU_SOURCES
from harness.monitor.sampler import ResourceSampler, SamplerThread
from harness.results.build import build_results, incomplete_reason
from harness.results.events import read_events
from harness.results.io import write_results
from harness.results.schema import EVENTS_FILENAME, RESULTS_FILENAME
from harness.results.status import Evidence, decide_status

GRACE_SECONDS = 5.0  # from the forwarded signal (or timeout SIGTERM) to SIGKILL of the child's group
def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m harness.agent", description=__doc__.splitlines()[0])
    parser.add_argument("--mode", required=True)
    parser.add_argument("--results", required=True, type=Path, help="this run's results folder")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--run-id")
    parser.add_argument("--experiment")
    parser.add_argument("--timeout", type=float, help="seconds before the script is stopped (status timeout)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between resource samples")
    parser.add_argument("--backend")
    parser.add_argument("--cpu-source", choices=CPU_SOURCES, default=CONTAINER_CGROUP,
                        help="whose CPU and memory to sample: the cgroup we are in, or our process tree")
    parser.add_argument("--config", type=Path, help="experiment_config.json (read for batch_size and the manifest)")
    parser.add_argument("--plan-id", help="the plan this run belongs to (recorded in results.json)")
    parser.add_argument("--image", help="the image the run's container runs (recorded in results.json)")
    parser.add_argument("--image-id", help="that image's id (recorded in results.json)")
    parser.add_argument("--grace", type=float, default=GRACE_SECONDS,
                        help="seconds between forwarding a stop signal and SIGKILL")
    parser.add_argument("--no-instrument", action="store_true",
                        help="no automatic step timing of PyTorch / Keras (harness.autoinstrument)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ...")
    args = parser.parse_args(argv)
    # Hosts that predate the flags told the agent through the environment.
    args.plan_id = args.plan_id or os.environ.get(envvars.PLAN_ID)
    args.image = args.image or os.environ.get(envvars.IMAGE)
    args.image_id = args.image_id or os.environ.get(envvars.IMAGE_ID)
    if args.command and args.command[0] == "--":
        args.command = args.command[1:]
    if not args.command:
        parser.error("no command to run; give it after --, e.g. -- python baseline.py")
    return args


def agent_command(*, python: str, command: list[str], mode: str, results: str, run_id: str, experiment: str,
                  interval: float, backend: str, config: str, seed: int | None = None,
                  timeout: float | None = None, plan_id: str | None = None, image: str | None = None,
                  image_id: str | None = None, instrument: bool = True,
                  cpu_source: str = CONTAINER_CGROUP) -> list[str]:
    """The command line that runs the agent on the mode's ``command``: what :func:`parse_args` reads.

    Built here, beside the parser, so that the backends (container or local process) cannot
    drift from what the agent accepts.
    """
    cmd = [python, "-m", "harness.agent", "--mode", mode, "--results", results, "--run-id", run_id,
           "--experiment", experiment, "--interval", str(interval), "--backend", backend, "--config", config,
           "--cpu-source", cpu_source]
    optional = (("--seed", seed), ("--timeout", timeout), ("--plan-id", plan_id), ("--image", image),
                ("--image-id", image_id))
    for flag, value in optional:
        if value is not None:
            cmd += [flag, str(value)]
    if not instrument:
        cmd.append("--no-instrument")
    return cmd + ["--", *command]


def load_config(path: Path | None) -> dict[str, Any] | None:
    """experiment_config.json as plain JSON (no pydantic in here); ``None`` when absent or bad."""
    if path is None:
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class Supervisor:
    """Runs the child and turns how it ended into a status."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.stop_reason: str | None = None  # "interrupted" | "timeout"
        self.stop_signal: int | None = None
        self._escalation: threading.Timer | None = None
        self._lock = threading.RLock()  # re-entered when a signal lands while the timeout path holds it

    def start(self, env: dict[str, str]) -> None:
        # Own process group: a terminal's Ctrl-C reaches only us, and we forward it once.
        self.proc = subprocess.Popen(self.args.command, env=env, process_group=0)

    def request_stop(self, reason: str, sig: int) -> None:
        """Forward ``sig`` to the child's group; SIGKILL it after the grace period."""
        with self._lock:
            if self.stop_reason is None:
                self.stop_reason = reason
                self.stop_signal = sig
            self._signal_group(sig)
            if self._escalation is None:
                self._escalation = threading.Timer(self.args.grace, self._signal_group, args=(signal.SIGKILL,))
                self._escalation.daemon = True
                self._escalation.start()

    def _signal_group(self, sig: int) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def wait(self) -> int:
        assert self.proc is not None
        deadline = time.monotonic() + self.args.timeout if self.args.timeout else None
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                rc = self.proc.wait(timeout=remaining)
                break
            except subprocess.TimeoutExpired:
                self.request_stop("timeout", signal.SIGTERM)
                deadline = None
        if self._escalation is not None:
            self._escalation.cancel()
        # Stray grandchildren (DataLoader workers) must not outlive the run.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return rc


def agent_evidence(rc: int, stop_reason: str | None, oom_before: int | None, oom_after: int | None,
                   memory: dict[str, Any] | None) -> Evidence:
    """What the agent witnessed of the script's end (``rc`` as subprocess gives it: -N for signal N)."""
    at_limit = False
    if rc == -signal.SIGKILL and memory:
        limit, peak = memory.get("limit"), memory.get("peak") or memory.get("usage")
        at_limit = bool(limit and peak and peak >= 0.95 * limit)
    rose = oom_before is not None and oom_after is not None and oom_after > oom_before
    return Evidence(exit_code=128 - rc if rc < 0 else rc, stop_reason=stop_reason, oom_counter_rose=rose,
                    killed_at_memory_limit=at_limit)


def _script_env(args: argparse.Namespace, run_id: str, experiment: str, events_path: Path) -> dict[str, str]:
    """The script's environment: ours plus the HARNESS_* variables of docs/architecture.md."""
    env = dict(os.environ)
    env.update({envvars.AGENT: "1", envvars.MODE: args.mode, envvars.RUN_ID: run_id,
                envvars.RESULTS_DIR: str(args.results.resolve()), envvars.EVENTS_FILE: str(events_path.resolve()),
                envvars.SAMPLING_INTERVAL: str(args.interval)})
    if experiment:
        env[envvars.EXPERIMENT] = experiment
    if args.seed is not None:
        env[envvars.SEED] = str(args.seed)
    if args.config is not None and args.config.is_file():
        env[envvars.CONFIG] = str(args.config.resolve())
    if not args.no_instrument and autoinstrument.enabled(env):
        env = autoinstrument.child_env(env)  # the script's process only: the bootstrap takes itself off
    return env


def _supervise(args: argparse.Namespace, env: dict[str, str]) -> tuple[int, str | None, str | None]:
    """Run the script to its end, forwarding SIGINT / SIGTERM; returns (rc, stop reason, start error)."""
    sup = Supervisor(args)
    previous = {sig: signal.signal(sig, lambda s, _f: sup.request_stop("interrupted", s))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    error: str | None = None
    try:
        sup.start(env)
        rc = sup.wait()
    except OSError as e:  # the command does not exist or is not executable
        rc = 127 if isinstance(e, FileNotFoundError) else 126
        error = f"cannot start {args.command[0]!r}: {e.strerror or e}"
        print(f"harness.agent: {error}", file=sys.stderr)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return rc, sup.stop_reason, error


def run(argv: list[str]) -> int:
    """The agent's main; returns its exit code (the child's)."""
    args = parse_args(argv)
    results_dir: Path = args.results
    results_dir.mkdir(parents=True, exist_ok=True)
    events_path = results_dir / EVENTS_FILENAME
    run_id = args.run_id or os.environ.get(envvars.RUN_ID) or results_dir.name
    experiment = args.experiment or os.environ.get(envvars.EXPERIMENT) or ""
    config = load_config(args.config)
    fingerprint, host = take_fingerprint(os.environ), HostLoadProbe()  # what ran; what else ran beside it
    writer = EventWriter(events_path)
    sampler = ResourceSampler(track_pids=_CachedTree(os.getpid()), source=args.cpu_source)
    started_at, start_m = time.time(), time.monotonic()
    where = {"backend": args.backend, "image": args.image, "plan_id": args.plan_id, "node": socket.gethostname(),
             "fingerprint": fingerprint}
    writer.emit("run_start", run_id=run_id, mode=args.mode, seed=args.seed, experiment=experiment,
                command=args.command, pid=os.getpid(), **where,
                gpus=[d["uuid"] for d in sampler.gpu.names()] if sampler.gpu else [])
    manifest = environment_manifest(sampler, seed=args.seed, cwd=Path.cwd(), image=args.image,
                                    image_id=args.image_id)
    writer.emit("env", environment=manifest)
    oom_before = sampler.cgroup.oom_kills()
    last_memory: dict[str, Any] = {}

    def sink(sample: dict[str, Any]) -> None:
        nonlocal last_memory
        last_memory = sample.get("memory") or last_memory
        host.sample()
        writer.append({"t": sample["t"], "m": sample["m"], "type": "sample",
                       **{k: v for k, v in sample.items() if k not in ("t", "m")}})

    thread = SamplerThread(sampler, args.interval, sink)
    thread.start()
    rc, stop_reason, error = _supervise(args, _script_env(args, run_id, experiment, events_path))
    thread.stop(final_sample=True)
    oom_after = sampler.cgroup.oom_kills()
    sampler.close()

    status = decide_status(agent_evidence(rc, stop_reason, oom_before, oom_after, last_memory))
    sig_name = signal.Signals(-rc).name if rc < 0 and -rc in signal.Signals._value2member_map_ else None
    exit_code = 128 - rc if rc < 0 else rc
    if error is None and status != "completed":
        error = _describe(status, rc, sig_name, args.timeout)
    wall = time.monotonic() - start_m
    writer.emit("run_end", status=status, exit_code=exit_code, signal=sig_name, wall_time=wall, error=error)
    writer.close()
    info = {"run_id": run_id, "mode": args.mode, "seed": args.seed, "status": status, "exit_code": exit_code,
            "signal": sig_name, "error": error, "wall_time": wall, "started_at": started_at,
            "ended_at": started_at + wall, "command": args.command, **where, "experiment_name": experiment,
            "environment": manifest, "config": config, "host_load": host.finish()}
    _write_record(results_dir, events_path, writer.drop_reason, info)
    return exit_code


def _write_record(results_dir: Path, events_path: Path, drop_reason: str | None, info: dict[str, Any]) -> None:
    """results.json from the events and what the agent knows; a run with holes is failed, never hidden."""
    try:
        events, dropped = read_events(events_path)
    except OSError as e:  # the script replaced or removed it (see harness.nofollow)
        events, dropped, drop_reason = [], 0, drop_reason or f"events.jsonl unreadable: {e.strerror}"
    if dropped:
        info["dropped_lines"] = dropped
    incomplete = drop_reason or incomplete_reason(events)
    if incomplete:
        # Holes in the measurements: the run must not be compared as if whole.
        info["results_incomplete"] = incomplete
        if info["status"] == "completed":
            info["status"], info["error"] = "failed", f"results incomplete: {incomplete}"
    try:
        write_results(results_dir, build_results(events, info))
    except OSError as e:  # a full disk, or the script made results.json a folder: the backend records it
        print(f"harness.agent: cannot write {RESULTS_FILENAME}: {(e.strerror or str(e)).lower()}", file=sys.stderr)


def _describe(status: str, rc: int, sig_name: str | None, timeout: float | None) -> str:
    if status == "timeout":
        return f"stopped after the {timeout:g} s timeout"
    if status == "oom_killed":
        return "killed by the out-of-memory killer (memory limit reached)"
    if status == "interrupted":
        return f"stopped by a signal ({sig_name or 'exit ' + str(rc)})"
    if sig_name:
        return f"killed by {sig_name}"
    return f"exited with code {rc}"


class _CachedTree:
    """Our process tree, rescanned at most every 10 s (scanning /proc costs milliseconds)."""

    def __init__(self, root: int, ttl: float = 10.0) -> None:
        self.root, self.ttl = root, ttl
        self._at = -1e9
        self._pids: set[int] = {root}

    def __call__(self) -> set[int]:
        now = time.monotonic()
        if now - self._at > self.ttl:
            self._pids = _process_tree(self.root)
            self._at = now
        return self._pids


def _process_tree(root: int) -> set[int]:
    """PIDs of ``root`` and its descendants, from /proc (for NVML per-process GPU memory)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = set(), [root]
    while todo:
        pid = todo.pop()
        out.add(pid)
        todo.extend(children.get(pid, []))
    return out


def main() -> None:
    try:
        code = run(sys.argv[1:])
    except OSError as e:
        # the results folder cannot be written (read-only mount, wrong owner, full disk): one line
        where = f" {e.filename}" if getattr(e, "filename", None) else ""
        fix = "" if e.errno in (errno.ENOSPC, errno.EDQUOT) else "; mount the results folder writable for this user"
        print(f"harness.agent: cannot write the run's results{where}: {(e.strerror or str(e)).lower()}{fix}",
              file=sys.stderr)
        code = 2
    sys.exit(code)


if __name__ == "__main__":
    main()
