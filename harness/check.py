"""``harness check``: is this machine ready to run experiments, and what to do where it is not.

Each check is independent and never raises: a check that cannot look (no engine, no NVML)
reports that as its finding. ``required`` checks make the command exit non-zero.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

DISK_WARN_BYTES = 20 * 2**30  # framework images are a few GB each; CUDA bases more
RESULTS_WARN_BYTES = 2 * 2**30
REQUIRED_MODULES = {"docker": "docker", "click": "click", "jinja2": "jinja2", "pydantic": "pydantic",
                    "psutil": "psutil", "numpy": "numpy", "rich": "rich", "matplotlib": "matplotlib",
                    "pynvml": "nvidia-ml-py"}
OPTIONAL_MODULES = {"torch": "harness[pytorch]", "tensorflow": "harness[tensorflow]", "ray": "harness[ray]"}


@dataclass
class CheckResult:
    """One line of ``harness check``. ``status``: ok, warn (works, but look), fail, or info."""

    name: str
    status: str
    detail: str
    required: bool = False
    fix: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "warn", "info")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_engine() -> tuple[CheckResult, Any]:
    from harness.engine import docker_client

    try:
        client = docker_client(timeout=5)
        version = client.version()
        info = client.info()
    except HarnessError as e:
        return CheckResult("docker engine", "fail", str(e), required=True, fix=e.hint), None
    except Exception as e:  # a half-broken engine still must not crash the check
        return CheckResult("docker engine", "fail", f"{type(e).__name__}: {e}", required=True,
                           fix="start the engine: sudo systemctl start docker (or run dockerd)"), None
    detail = (f"Docker {version.get('Version', '?')} (API {version.get('ApiVersion', '?')}), "
              f"{info.get('Driver', '?')} storage, {info.get('NCPU', '?')} CPUs, {_gib(info.get('MemTotal', 0))}")
    return CheckResult("docker engine", "ok", detail, required=True), info


def check_gpu_runtime(info: dict[str, Any] | None, gpu_count: int = 0) -> CheckResult:
    """The engine's way to hand GPUs to a container; with GPUs on the host and none, say exactly that."""
    from harness.engine import GPU_RUNTIME_FIX, gpu_runtime

    if info is None:
        return CheckResult("gpu runtime", "info", "unknown (no engine)")
    found = gpu_runtime(info)
    if found:
        return CheckResult("gpu runtime", "ok", found)
    runtimes = ", ".join(sorted((info.get("Runtimes") or {}).keys())) or "-"
    if gpu_count:
        return CheckResult("gpu runtime", "warn",
                           f"{gpu_count} GPU(s) seen by NVML, but this Docker engine has no NVIDIA runtime or CDI "
                           f"(runtimes: {runtimes}): containers run on the CPU (gpus auto) or fail (--gpus all)",
                           fix=GPU_RUNTIME_FIX)
    return CheckResult("gpu runtime", "warn", f"no NVIDIA runtime or CDI (runtimes: {runtimes}); "
                       "--gpus will fail, CPU runs work",
                       fix="install the NVIDIA Container Toolkit: sudo nvidia-ctk runtime configure --runtime=docker")


def check_gpus() -> CheckResult:
    try:
        import pynvml
    except ImportError:
        return CheckResult("gpus (NVML)", "warn", "nvidia-ml-py is not installed", fix="pip install nvidia-ml-py")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        return CheckResult("gpus (NVML)", "info", f"no GPU seen: {e}")
    try:
        count = pynvml.nvmlDeviceGetCount()
        names = []
        for i in range(count):
            name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))
            names.append(name.decode() if isinstance(name, bytes) else name)
        driver = pynvml.nvmlSystemGetDriverVersion()
        driver = driver.decode() if isinstance(driver, bytes) else driver
    except pynvml.NVMLError as e:
        return CheckResult("gpus (NVML)", "warn", f"NVML answers but fails: {e}")
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass
    if not count:
        return CheckResult("gpus (NVML)", "info", f"driver {driver}, no GPU")
    return CheckResult("gpus (NVML)", "ok", f"{count} GPU(s), driver {driver}: {', '.join(names)}")


def check_disk(info: dict[str, Any] | None, results_dir: Path) -> list[CheckResult]:
    out = []
    places = []
    root = (info or {}).get("DockerRootDir")
    if root and Path(root).exists():
        places.append(("disk: images", Path(root), DISK_WARN_BYTES, "docker system prune, or move DockerRootDir"))
    target = results_dir if results_dir.exists() else Path.cwd()
    places.append(("disk: results", target, RESULTS_WARN_BYTES, "free space, or run from another folder"))
    for name, path, threshold, fix in places:
        try:
            free = shutil.disk_usage(path).free
        except OSError as e:
            out.append(CheckResult(name, "warn", f"{path}: cannot measure ({e})"))
            continue
        if free < threshold:
            out.append(CheckResult(name, "warn", f"{_gib(free)} free at {path} (under {_gib(threshold)})", fix=fix))
        else:
            out.append(CheckResult(name, "ok", f"{_gib(free)} free at {path}"))
    return out


def check_cgroup(info: dict[str, Any] | None) -> CheckResult:
    host = "v2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "v1"
    engine = (info or {}).get("CgroupVersion")
    driver = (info or {}).get("CgroupDriver")
    detail = f"host cgroup {host}" + (f", engine cgroup v{engine} ({driver})" if engine else "")
    return CheckResult("cgroups", "ok", detail)


def check_images(client_ok: bool) -> CheckResult:
    if not client_ok:
        return CheckResult("framework images", "info", "unknown (no engine)")
    from harness.images import list_images

    try:
        images = list_images()
    except HarnessError as e:
        return CheckResult("framework images", "warn", str(e))
    built = [f"{tag} ({iid})" for tag, iid in images.items() if iid]
    missing = [tag for tag, iid in images.items() if not iid]
    if not missing:
        return CheckResult("framework images", "ok", ", ".join(built))
    detail = (f"built: {', '.join(built)}; " if built else "") + f"missing: {', '.join(missing)}"
    return CheckResult("framework images", "warn", detail,
                       fix="harness build (no registry: harness build --bootstrap --wheelhouse DIR)")


def check_python() -> list[CheckResult]:
    from importlib.metadata import PackageNotFoundError, version

    missing = []
    for module, dist in REQUIRED_MODULES.items():
        try:
            if importlib.util.find_spec(module) is None:
                missing.append(dist)
        except (ImportError, ValueError):
            missing.append(dist)
    out = []
    if missing:
        out.append(CheckResult("python packages", "fail", f"missing: {', '.join(missing)}", required=True,
                               fix=f"pip install {' '.join(missing)}"))
    else:
        out.append(CheckResult("python packages", "ok", f"{len(REQUIRED_MODULES)} required packages importable"))
    found, absent = [], []
    for module, extra in OPTIONAL_MODULES.items():
        try:
            found.append(f"{module} {version(module if module != 'tensorflow' else _tf_dist())}")
        except PackageNotFoundError:
            absent.append(module)
    detail = ", ".join(found) or "none"
    if absent:
        detail += f" (not installed: {', '.join(absent)}; only needed for --backend local / --executor ray)"
    out.append(CheckResult("local frameworks", "info", detail))
    return out


def _tf_dist() -> str:
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("tensorflow", "tensorflow-cpu"):
        try:
            version(dist)
            return dist
        except PackageNotFoundError:
            continue
    return "tensorflow"


def run_checks(results_dir: Path | None = None) -> list[CheckResult]:
    """Every check, in the order the table shows them."""
    engine, info = check_engine()
    from harness.host_gpus import host_gpu_ids

    results = [engine, check_gpu_runtime(info, len(host_gpu_ids())), check_gpus(), check_cgroup(info)]
    results += check_disk(info, results_dir or Path.cwd())
    results.append(check_images(info is not None))
    results += check_python()
    return results


def render_checks(results: list[CheckResult]) -> str:
    """A readable table (rich), with the fix under each failed or warned line; colours only on a terminal."""
    import io

    from rich.console import Console
    from rich.table import Table

    marks = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[red]FAIL[/]", "info": "[blue]info[/]"}
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("check")
    table.add_column("status")
    table.add_column("detail", overflow="fold")
    for r in results:
        detail = r.detail + (f"\n[dim]fix: {r.fix}[/]" if r.fix and r.status in ("warn", "fail") else "")
        table.add_row(r.name + (" *" if r.required else ""), marks.get(r.status, r.status), detail)
    out = io.StringIO()
    console = Console(file=out, width=max(100, shutil.get_terminal_size().columns), soft_wrap=False,
                      force_terminal=True if os.isatty(1) else False)
    console.print(table)
    failed = [r for r in results if r.required and not r.ok]
    console.print("* required" + (f"; {len(failed)} required check(s) failed" if failed else "; all required checks pass"))
    return out.getvalue().rstrip("\n")
