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
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from harness.monitor.events import EventWriter, read_events
from harness.monitor.sampler import ResourceSampler, SamplerThread
from harness.results_build import build_results

GRACE_SECONDS = 5.0  # from the forwarded signal (or timeout SIGTERM) to SIGKILL of the child's group
# Environment variable names that look like credentials never reach results.json.
SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSW|PASSPHRASE|KEY|CREDENTIAL|AUTH|COOKIE|SESSION|PRIVATE|CERT|"
                         r"SIGNATURE|_PAT$|^PAT_|DSN|CONN(ECTION)?_STR)", re.IGNORECASE)
# ...nor values that carry a password in a URL (postgres://user:pw@host).
SECRET_VALUE = re.compile(r"://[^/\s:@]+:[^/\s@]+@")


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
    parser.add_argument("--config", type=Path, help="experiment_config.json (read for batch_size and the manifest)")
    parser.add_argument("--grace", type=float, default=GRACE_SECONDS,
                        help="seconds between forwarding a stop signal and SIGKILL")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ...")
    args = parser.parse_args(argv)
    if args.command and args.command[0] == "--":
        args.command = args.command[1:]
    if not args.command:
        parser.error("no command to run; give it after --, e.g. -- python baseline.py")
    return args


def filtered_env(env: dict[str, str]) -> dict[str, str]:
    """The environment without anything that looks like a secret (by name or by value)."""
    return {k: v for k, v in sorted(env.items()) if not SECRET_NAME.search(k) and not SECRET_VALUE.search(v)}


def _package_version(*names: str) -> str | None:
    from importlib import metadata

    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _read_module_file(package: str, relative: str) -> str | None:
    """Text of a file inside an installed package, without importing the package (torch takes seconds)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        try:
            return (Path(location) / relative).read_text()
        except OSError:
            continue
    return None


def framework_info() -> tuple[dict[str, Any] | None, str | None]:
    """``({name, version}, cuda_build_version)`` of torch or TensorFlow, read from metadata and files."""
    torch_version = _package_version("torch")
    if torch_version:
        text = _read_module_file("torch", "version.py") or ""
        m = re.search(r"^cuda(?:: \S+)? = '([^']+)'", text, re.MULTILINE)
        return {"name": "torch", "version": torch_version}, m.group(1) if m else None
    tf_version = _package_version("tensorflow", "tensorflow-cpu", "tf-nightly")
    if tf_version:
        text = _read_module_file("tensorflow", "python/platform/build_info.py") or ""
        m = re.search(r"['\"]cuda_version['\"]\s*[:,]\s*['\"]([^'\"]+)['\"]", text)
        return {"name": "tensorflow", "version": tf_version}, m.group(1) if m else None
    return None, None


def cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def git_commit(start: Path) -> str | None:
    """HEAD of the git repository holding ``start``, read from ``.git`` (git may not be installed)."""
    for folder in [start, *start.parents]:
        git = folder / ".git"
        if git.is_file():  # a worktree or submodule: "gitdir: <path>"
            text = git.read_text().strip()
            if text.startswith("gitdir:"):
                git = (folder / text.split(":", 1)[1].strip()).resolve()
        if not git.is_dir():
            continue
        try:
            head = (git / "HEAD").read_text().strip()
            if not head.startswith("ref:"):
                return head
            ref = head.split(":", 1)[1].strip()
            common = git
            if (git / "commondir").is_file():
                common = (git / (git / "commondir").read_text().strip()).resolve()
            for base in (git, common):
                if (base / ref).is_file():
                    return (base / ref).read_text().strip()
                packed = base / "packed-refs"
                if packed.is_file():
                    for line in packed.read_text().splitlines():
                        if line.endswith(" " + ref):
                            return line.split()[0]
        except OSError:
            return None
        return None
    return None


def environment_manifest(sampler: ResourceSampler, args: argparse.Namespace, cwd: Path) -> dict[str, Any]:
    """What the run ran on, for reproducing it: versions, hardware, limits, image, commit, seed."""
    from harness import __version__

    framework, cuda = framework_info()
    gpu = sampler.gpu
    return {
        "harness_version": __version__,
        "python": platform.python_version(),
        "framework": framework,
        "cuda": cuda,
        "driver": gpu.driver if gpu is not None else None,
        "cuda_driver": gpu.cuda_driver if gpu is not None else None,
        "gpus": gpu.names() if gpu is not None else [],
        "gpu_unavailable": (gpu.reason if gpu is not None and not gpu.available else None),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cgroup": sampler.describe(),
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "image": os.environ.get("HARNESS_IMAGE"),
        "image_id": os.environ.get("HARNESS_IMAGE_ID"),
        "git_commit": git_commit(cwd),
        "seed": args.seed,
        "env": filtered_env(dict(os.environ)),
    }


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


def decide_status(rc: int, stop_reason: str | None, oom_before: int | None, oom_after: int | None,
                  memory: dict[str, Any] | None) -> str:
    """How the run ended. The cgroup's OOM counter is the first witness of an OOM kill; a SIGKILL
    with memory at the limit is the second (the counter is missing in some child cgroups)."""
    if stop_reason == "timeout":
        return "timeout"
    if oom_before is not None and oom_after is not None and oom_after > oom_before:
        return "oom_killed"
    if stop_reason == "interrupted":
        return "interrupted"
    if rc == 0:
        return "completed"
    if rc == -signal.SIGKILL and memory:
        limit, peak = memory.get("limit"), memory.get("peak") or memory.get("usage")
        if limit and peak and peak >= 0.95 * limit:
            return "oom_killed"
    return "failed"


def run(argv: list[str]) -> int:
    """The agent's main; returns its exit code (the child's)."""
    args = parse_args(argv)
    results_dir: Path = args.results
    results_dir.mkdir(parents=True, exist_ok=True)
    events_path = results_dir / "events.jsonl"
    run_id = args.run_id or os.environ.get("HARNESS_RUN_ID") or results_dir.name
    experiment = args.experiment or os.environ.get("HARNESS_EXPERIMENT") or ""
    cwd = Path.cwd()
    config = load_config(args.config)

    writer = EventWriter(events_path)
    sampler = ResourceSampler(track_pids=_CachedTree(os.getpid()))
    started_at = time.time()
    start_m = time.monotonic()
    writer.emit("run_start", run_id=run_id, mode=args.mode, seed=args.seed, experiment=experiment,
                command=args.command, pid=os.getpid(), backend=args.backend, image=os.environ.get("HARNESS_IMAGE"),
                plan_id=os.environ.get("HARNESS_PLAN_ID"), node=socket.gethostname(),
                gpus=[d["uuid"] for d in sampler.gpu.names()] if sampler.gpu else [])
    manifest = environment_manifest(sampler, args, cwd)
    writer.emit("env", environment=manifest)
    oom_before = sampler.cgroup.oom_kills()
    last_memory: dict[str, Any] = {}

    def sink(sample: dict[str, Any]) -> None:
        nonlocal last_memory
        last_memory = sample.get("memory") or last_memory
        writer.append({"t": sample["t"], "m": sample["m"], "type": "sample",
                       **{k: v for k, v in sample.items() if k not in ("t", "m")}})

    thread = SamplerThread(sampler, args.interval, sink)
    env = dict(os.environ)
    env.update({"HARNESS_AGENT": "1", "HARNESS_MODE": args.mode, "HARNESS_RUN_ID": run_id,
                "HARNESS_RESULTS_DIR": str(results_dir.resolve()), "HARNESS_EVENTS_FILE": str(events_path.resolve()),
                "HARNESS_SAMPLING_INTERVAL": str(args.interval)})
    if experiment:
        env["HARNESS_EXPERIMENT"] = experiment
    if args.seed is not None:
        env["HARNESS_SEED"] = str(args.seed)
    if args.config is not None and args.config.is_file():
        env["HARNESS_CONFIG"] = str(args.config.resolve())

    sup = Supervisor(args)
    previous = {sig: signal.signal(sig, lambda s, _f: sup.request_stop("interrupted", s))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    error: str | None = None
    thread.start()
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
    thread.stop(final_sample=True)
    oom_after = sampler.cgroup.oom_kills()
    sampler.close()

    status = decide_status(rc, sup.stop_reason, oom_before, oom_after, last_memory)
    sig_name = signal.Signals(-rc).name if rc < 0 and -rc in signal.Signals._value2member_map_ else None
    exit_code = 128 - rc if rc < 0 else rc
    if error is None and status != "completed":
        error = _describe(status, rc, sig_name, args.timeout)
    wall = time.monotonic() - start_m
    writer.emit("run_end", status=status, exit_code=exit_code, signal=sig_name, wall_time=wall, error=error)
    writer.close()

    events, dropped = read_events(events_path)
    info = {"run_id": run_id, "mode": args.mode, "seed": args.seed, "status": status, "exit_code": exit_code,
            "signal": sig_name, "error": error, "wall_time": wall, "started_at": started_at,
            "ended_at": started_at + wall, "command": args.command, "backend": args.backend,
            "image": os.environ.get("HARNESS_IMAGE"), "plan_id": os.environ.get("HARNESS_PLAN_ID"),
            "node": socket.gethostname(), "experiment_name": experiment, "environment": manifest,
            "config": config}
    if dropped:
        info["dropped_lines"] = dropped
    from harness.results import write_json_atomic
    from harness.monitor.events import finite
    from harness.monitor.experiment import _sanitise

    write_json_atomic(results_dir / "results.json", _sanitise(build_results(events, info), finite))
    return exit_code


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
        # the results folder cannot be written (read-only mount, wrong owner): one line, no traceback
        where = f" {e.filename}" if getattr(e, "filename", None) else ""
        print(f"harness.agent: cannot write the run's results{where}: {e.strerror or e}; "
              f"mount the results folder writable for this user", file=sys.stderr)
        code = 2
    sys.exit(code)


if __name__ == "__main__":
    main()
