"""What a run ran on, for reproducing it: versions, hardware, limits, image, commit, seed, environment.

Written by the agent into results.json's ``environment``. Read from package metadata and files,
never by importing the frameworks (torch takes seconds to import). In-container code.
"""

from __future__ import annotations

import os
import platform
import re
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import hardware
from harness.envfilter import env_manifest

if TYPE_CHECKING:
    from harness.monitor.sampler import ResourceSampler


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


def environment_manifest(sampler: ResourceSampler, *, seed: int | None, cwd: Path, image: str | None,
                         image_id: str | None) -> dict[str, Any]:
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
        "cpu_model": hardware.cpu_model(),
        "cpu_count": os.cpu_count(),
        "cgroup": sampler.describe(),
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "image": image,
        "image_id": image_id,
        "git_commit": git_commit(cwd),
        "seed": seed,
        **env_manifest(dict(os.environ)),
    }
