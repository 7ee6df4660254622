"""What goes into a framework image's build context: the harness wheel, local wheels, a CA bundle.

Everything here changes only when its sources change (a reproducible harness wheel, only the
wheels an image needs), so a rebuild with nothing changed is a cache hit.
"""

from __future__ import annotations

import hashlib
import re
import os
import shutil
import subprocess
import sys
from pathlib import Path

from harness import __version__
from harness.errors import ImageBuildError
from harness.package_data import docker_dir, repo_root

# Distribution names (normalised) of the framework wheels a wheelhouse may hold for each image.
FRAMEWORK_WHEELS = {"pytorch": {"torch"}, "tensorflow": {"tensorflow", "tensorflow_cpu"}}
# Hatchling's zip timestamps come from here: a fixed date makes the harness wheel byte-identical
# across builds of the same code, so the layer that installs it stays cached.
_SOURCE_DATE_EPOCH = "1577836800"
_LOG_TAIL = 25


def _normalise(dist: str) -> str:
    return re.sub(r"[-_.]+", "_", dist).lower()


def _wheel_dist(path: Path) -> str:
    return _normalise(path.name.split("-")[0])


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def harness_requirements() -> list[str]:
    """harness's core dependencies (no extras: what runs inside a container), for a cached layer of their own.

    Read from the checkout's pyproject.toml when harness runs from one (the installed metadata of
    an editable install is as old as the install), else from the installed metadata.
    """
    root = repo_root()
    if root is not None and sys.version_info >= (3, 11):
        import tomllib

        with open(root / "pyproject.toml", "rb") as f:
            return sorted(tomllib.load(f)["project"]["dependencies"])
    from importlib.metadata import PackageNotFoundError, requires

    try:
        reqs = requires("harness") or []
    except PackageNotFoundError:
        reqs = []
    return sorted(r for r in reqs if "extra ==" not in r and "extra==" not in r)


def build_harness_wheel(dest: Path, wheelhouse: Path | None = None) -> Path:
    """Put a wheel of this harness in ``dest`` and return it.

    A ``harness-<version>-*.whl`` in the wheelhouse wins; otherwise the wheel is built from this
    checkout with a fixed SOURCE_DATE_EPOCH so that unchanged code gives identical bytes.

    Raises:
        ImageBuildError: when harness runs from a wheel install (no checkout) and no wheel was given.
    """
    dest.mkdir(parents=True, exist_ok=True)
    if wheelhouse is not None:
        for wheel in sorted(wheelhouse.glob(f"harness-{__version__}-*.whl")):
            target = dest / wheel.name
            _link_or_copy(wheel, target)
            return target
    root = repo_root()
    if root is None:
        raise ImageBuildError(
            "cannot put harness into the image: harness is installed from a wheel, not run from a checkout",
            hint=f"put harness-{__version__}-py3-none-any.whl in a folder and pass it as --wheelhouse DIR")
    key = _source_hash(root)
    if key in _WHEEL_MEMO:
        name, data = _WHEEL_MEMO[key]
        (dest / name).write_bytes(data)
        return dest / name
    env = dict(os.environ, SOURCE_DATE_EPOCH=_SOURCE_DATE_EPOCH, PIP_DISABLE_PIP_VERSION_CHECK="1")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(dest), str(root)]
    import importlib.util

    if importlib.util.find_spec("hatchling") is not None:
        cmd.insert(4, "--no-build-isolation")  # present: skip the isolated build env, which downloads it
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wheels = sorted(dest.glob("harness-*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-_LOG_TAIL:])
        first = next((ln for ln in reversed(tail.splitlines()) if "error" in ln.lower()), "see the log")
        raise ImageBuildError(f"building the harness wheel from {root} failed: {first.strip()}", log_tail=tail,
                              hint="pip needs hatchling (from the index, or `pip install hatchling` offline)")
    _WHEEL_MEMO[key] = (wheels[0].name, wheels[0].read_bytes())
    return wheels[0]


# A wheel per source tree already built in this process (tests and `build --framework all` build
# several images): pip wheel takes seconds, hashing the sources milliseconds.
_WHEEL_MEMO: dict[str, tuple[str, bytes]] = {}
_WHEEL_INPUTS = ("harness", "templates", "docker")


def _source_hash(root: Path) -> str:
    """sha256 over every file that goes into the harness wheel."""
    h = hashlib.sha256()
    files = [root / "pyproject.toml", root / "README.md"]
    for top in _WHEEL_INPUTS:
        files += [p for p in (root / top).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    for path in sorted(files):
        if path.is_file():
            h.update(str(path.relative_to(root)).encode() + b"\0")
            h.update(path.read_bytes())
    return h.hexdigest()


def _git(root: Path | None, *args: str) -> str:
    if root is None:
        return "unknown"
    try:
        proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if proc.returncode != 0:
        return "unknown"
    return proc.stdout.strip() or "unknown"


def assemble_framework_context(ctx: Path, framework: str, *, wheelhouse: Path | None,
                               ca_bundle: Path | None) -> None:
    """Lay out the build context of one framework image in ``ctx`` (see the Dockerfile's header)."""
    src = docker_dir()
    shutil.copy2(src / f"Dockerfile.{framework}", ctx / "Dockerfile")
    for sub in ("scripts", "ca", "wheelhouse", "dist"):
        (ctx / sub).mkdir()
    for sub in ("scripts", "ca", "wheelhouse"):
        (ctx / sub / f".keep-{sub}").write_text("")  # COPY of an empty folder is not portable
    for script in ("install_framework.sh", "install_harness.sh"):
        shutil.copy2(src / script, ctx / "scripts" / script)
    if ca_bundle is not None:
        shutil.copyfile(ca_bundle, ctx / "ca" / "ca-bundle.crt")
    if wheelhouse is not None:
        wanted = FRAMEWORK_WHEELS[framework]
        for wheel in sorted(wheelhouse.glob("*.whl")):
            if _wheel_dist(wheel) in wanted:  # only what this image needs: no GBs for nothing
                _link_or_copy(wheel, ctx / "wheelhouse" / wheel.name)
    (ctx / "requirements.txt").write_text("\n".join(harness_requirements()) + "\n")
    build_harness_wheel(ctx / "dist", wheelhouse)
