"""Framework images (``harness/pytorch:<version>``), experiment images, and ``--bootstrap``.

Builds go through the Docker SDK's low-level streaming API (``client.api.build(decode=True)``):
the classic builder, so no BuildKit syntax in our Dockerfiles. Everything that goes into an
image is assembled in a temporary build context whose bytes change only when their sources
change (a reproducible harness wheel, only the wheels needed), so a rebuild with nothing
changed is a cache hit that takes seconds.
"""

from __future__ import annotations

import collections
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from harness import __version__
from harness.code import code_digests, code_files, combine_digests
from harness.engine import docker_client, engine_message
from harness.errors import ImageBuildError, UsageError
from harness.image_context import _git, _source_hash, assemble_framework_context, build_harness_wheel
from harness.package_data import docker_dir, repo_root

if TYPE_CHECKING:
    import docker

    from harness.experiment import Experiment

Echo = Callable[[str], None]

FRAMEWORKS = ("pytorch", "tensorflow")
# Pinned defaults for real users with registry access: the frameworks' official GPU images.
DEFAULT_BASE_IMAGES = {
    "pytorch": "pytorch/pytorch:2.4.1-cuda12.1-cudnn9-runtime",
    "tensorflow": "tensorflow/tensorflow:2.17.0-gpu",
}
BOOTSTRAP_REPO = "harness/base"
BOOTSTRAP_SUITE = "bookworm"
BOOTSTRAP_TAG = f"{BOOTSTRAP_REPO}:{BOOTSTRAP_SUITE}"
BOOTSTRAP_PACKAGES = ("python3", "python3-venv", "ca-certificates")
_LOG_TAIL = 25


def framework_tag(framework: str) -> str:
    """The tag ``harness build`` gives a framework image: ``harness/pytorch:0.1.0``."""
    if framework not in FRAMEWORKS:
        raise UsageError(f"unknown framework {framework!r}; choose pytorch or tensorflow")
    return f"harness/{framework}:{__version__}"


def image_exists(client: "docker.DockerClient", ref: str) -> bool:
    from docker.errors import ImageNotFound

    try:
        client.images.get(ref)
        return True
    except ImageNotFound:
        return False


# --------------------------------------------------------------------------- streaming build
def stream_build(client: "docker.DockerClient", *, echo: Echo, what: str, **kwargs: Any) -> str:
    """Run one classic build, echoing its output as it comes; return the image id.

    Raises:
        ImageBuildError: at the first error, with the engine's message and the log's tail.
    """
    from docker.errors import APIError

    tail: collections.deque[str] = collections.deque(maxlen=_LOG_TAIL)
    image_id = None
    try:
        for chunk in client.api.build(decode=True, rm=True, forcerm=True, **kwargs):
            if "stream" in chunk:
                for line in chunk["stream"].splitlines():
                    if line.strip():
                        tail.append(line)
                        echo(line)
            elif "status" in chunk:  # pulling the FROM image
                line = f"{chunk['status']} {chunk.get('progress', '')}".rstrip()
                if "progress" not in chunk:
                    tail.append(line)
                    echo(line)
            if "aux" in chunk and isinstance(chunk["aux"], dict) and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
            if "error" in chunk or "errorDetail" in chunk:
                message = chunk.get("error") or chunk["errorDetail"].get("message", "unknown error")
                message = " ".join(message.split())
                raise ImageBuildError(f"building {what} failed: {message}", log_tail="\n".join(tail),
                                      hint=_build_hint(message))
    except APIError as e:
        message = engine_message(e)
        raise ImageBuildError(f"building {what} failed: {message}", log_tail="\n".join(tail),
                              hint=_build_hint(message)) from e
    if image_id is None:
        # Old engines only print "Successfully built <id>".
        for line in reversed(tail):
            match = re.match(r"Successfully built ([0-9a-f]+)", line.strip())
            if match:
                image_id = match.group(1)
                break
    if image_id is None:
        raise ImageBuildError(f"building {what} ended without an image", log_tail="\n".join(tail))
    return image_id


def _build_hint(message: str) -> str | None:
    low = message.lower()
    if any(s in low for s in ("pull access denied", "dial tcp", "no such host", "timeout", "manifest unknown",
                              "connection refused", "lookup ")):
        if "pip" in low or "index" in low:
            return "the build cannot reach the package index: try --build-network host and --ca-bundle FILE"
        return ("the engine cannot pull the base image; without registry access use "
                "`harness build --bootstrap` (and --wheelhouse DIR for local wheels)")
    if "certificate" in low or "ssl" in low:
        return "a TLS proxy intercepts the build's downloads: pass its CA with --ca-bundle FILE"
    if "no space left" in low:
        return "free disk space where Docker keeps images (docker system prune)"
    return None


# --------------------------------------------------------------------------- bootstrap
def bootstrap_base_image(*, force: bool = False, suite: str = BOOTSTRAP_SUITE, echo: Echo = print) -> str:
    """Make ``harness/base:bookworm``, a Debian image with Python, without any registry.

    mmdebstrap builds the root file system from apt's own sources (which an air-gapped host
    mirrors anyway); the engine imports the tarball. Skipped when the tag exists, unless ``force``.

    Raises:
        ImageBuildError: when mmdebstrap is missing or fails, or the import fails.
        EngineUnavailableError: when no engine answers.
    """
    client = docker_client(timeout=None)
    tag = f"{BOOTSTRAP_REPO}:{suite}"
    if not force and image_exists(client, tag):
        echo(f"Base image {tag} exists; not bootstrapping again (--no-cache remakes it)")
        return tag
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        raise ImageBuildError("--bootstrap needs mmdebstrap, which is not installed",
                              hint="sudo apt-get install mmdebstrap")
    with tempfile.TemporaryDirectory(prefix="harness-bootstrap-") as tmp:
        tarball = Path(tmp) / "rootfs.tar"
        cmd = [mmdebstrap, "--variant=apt", f"--include={','.join(BOOTSTRAP_PACKAGES)}", suite, str(tarball)]
        echo(f"Bootstrapping {tag}: {' '.join(cmd[1:])}")
        tail: collections.deque[str] = collections.deque(maxlen=_LOG_TAIL)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            tail.append(line.rstrip())
            echo(line.rstrip())
        if proc.wait() != 0:
            raise ImageBuildError(f"mmdebstrap failed with exit code {proc.returncode}", log_tail="\n".join(tail),
                                  hint="mmdebstrap needs root (or unshare) and apt sources that answer")
        echo(f"Importing {tarball.stat().st_size / 2**20:.0f} MiB into {tag}")
        from docker.errors import APIError

        try:
            client.api.import_image(src=str(tarball), repository=BOOTSTRAP_REPO, tag=suite,
                                    changes=['CMD ["python3"]', "ENV LANG=C.UTF-8"])
        except APIError as e:
            raise ImageBuildError(f"importing the bootstrap root file system failed: {e.explanation}") from e
    if not image_exists(client, tag):
        raise ImageBuildError(f"the engine did not create {tag} from the bootstrap tarball")
    return tag


def build_framework_images(*, frameworks: Iterable[str] = FRAMEWORKS, bootstrap: bool = False,
                           base_image: str | None = None, wheelhouse: Path | None = None,
                           ca_bundle: Path | None = None, network: str = "default", no_cache: bool = False,
                           echo: Echo = print) -> list[str]:
    """Build ``harness/<framework>:<version>`` for each framework; return the tags.

    Raises:
        ImageBuildError: at the first failed step, with the engine's message.
        EngineUnavailableError: when no engine answers.
    """
    frameworks = list(frameworks)
    for fw in frameworks:
        framework_tag(fw)  # validates
    if network not in ("default", "host", "none"):
        raise UsageError(f"--build-network must be default, host or none (got {network!r})")
    if wheelhouse is not None and not Path(wheelhouse).is_dir():
        raise UsageError(f"--wheelhouse {wheelhouse}: not a folder")
    if ca_bundle is not None and not Path(ca_bundle).is_file():
        raise UsageError(f"--ca-bundle {ca_bundle}: not a file")
    client = docker_client(timeout=None)
    if bootstrap and base_image is None:
        base_image = bootstrap_base_image(force=no_cache, echo=echo)  # --no-cache remakes the base too
    root = repo_root()
    labels_args = {"HARNESS_SOURCE_HASH": _source_hash(root)[:16] if root else "unknown",
                   "HARNESS_VERSION": __version__,
                   "SOURCE_DATE": _git(root, "log", "-1", "--format=%cI"),
                   "GIT_COMMIT": _git(root, "rev-parse", "HEAD")}
    tags = []
    for fw in frameworks:
        tag = framework_tag(fw)
        base = base_image or DEFAULT_BASE_IMAGES[fw]
        echo(f"Building {tag} on {base}")
        with tempfile.TemporaryDirectory(prefix=f"harness-build-{fw}-") as tmp:
            ctx = Path(tmp)
            assemble_framework_context(ctx, fw, wheelhouse=wheelhouse, ca_bundle=ca_bundle)
            try:
                stream_build(client, echo=echo, what=tag, path=str(ctx), dockerfile="Dockerfile", tag=tag,
                             buildargs={"BASE_IMAGE": base, **labels_args}, nocache=no_cache, pull=False,
                             network_mode=None if network == "default" else network)
            except ImageBuildError as e:
                if not image_exists(client, base) and "Step 3/" not in e.log_tail:
                    # The FROM step failed: say which image, since the engine's message may not.
                    raise ImageBuildError(f"building {tag} failed: cannot get the base image {base}: "
                                          f"{e.message.split(' failed: ', 1)[-1]}", log_tail=e.log_tail,
                                          hint=e.hint or "check the --base-image name, or use --bootstrap") from e
                raise
        tags.append(tag)
    return tags


# --------------------------------------------------------------------------- experiment images
def experiment_context_files(experiment: "Experiment") -> list[str]:
    """Files (relative paths) that go into the experiment image: the experiment's code.

    One definition with the run record's (``harness.code.code_files``): ``.dockerignore``
    honoured, and never results/, the data folder (mounted read-only at run time, and possibly
    huge), logs, outputs or caches.
    """
    return code_files(experiment.path)


def _fallback_dockerfile() -> str:
    return (docker_dir() / "Dockerfile.experiment").read_text()


def experiment_hash(experiment: "Experiment", base_image_id: str, digests: dict[str, str] | None = None) -> str:
    """sha256 over the framework image id and the experiment's code (its per-file digests and modes)."""
    digests = code_digests(experiment.path) if digests is None else digests
    h = hashlib.sha256()
    h.update(base_image_id.encode())
    if "Dockerfile" not in digests:
        h.update(_fallback_dockerfile().encode())
    for rel in sorted(digests):
        executable = os.access(experiment.path / rel, os.X_OK)
        h.update(b"\0" + rel.encode() + b"\0" + (b"x" if executable else b"-") + digests[rel].encode())
    return h.hexdigest()


def experiment_base_image(experiment: "Experiment") -> str:
    return experiment.config.base_image or framework_tag(experiment.config.framework)


def planned_experiment_image(experiment: "Experiment") -> str:
    """The experiment image a run would use, without building it: its tag, and whether it still needs building.

    Raises:
        EngineUnavailableError: when no engine answers.
    """
    from docker.errors import ImageNotFound

    client = docker_client(timeout=30)
    try:
        base = experiment_base_image(experiment)
        try:
            base_id = client.images.get(base).id
        except ImageNotFound:
            return f"harness-{experiment.name} (not buildable yet: {base} is not built)"
        tag = f"harness-{experiment.name}:{experiment_hash(experiment, base_id)[:12]}"
        return tag if image_exists(client, tag) else f"{tag} (built at run time)"
    finally:
        client.close()


def ensure_experiment_image(experiment: "Experiment", *, rebuild: bool = False, echo: Echo = print,
                            network: str | None = None) -> str:
    """Build ``harness-<competition>:<hash>`` when it is missing or stale; return its tag.

    The image is the framework image plus the experiment's requirements.txt and code (built
    from the experiment's Dockerfile, or harness's default one when it has none).

    Raises:
        ImageBuildError: when the framework image is missing or the build fails.
        EngineUnavailableError: when no engine answers.
    """
    from docker.errors import ImageNotFound
    from docker.utils.build import create_archive

    client = docker_client(timeout=None)
    base = experiment_base_image(experiment)
    try:
        base_id = client.images.get(base).id
    except ImageNotFound:
        fw = experiment.config.framework
        raise ImageBuildError(
            f"the framework image {base} is not built",
            hint=f"run `harness build --framework {fw}` (offline: add --bootstrap --wheelhouse DIR)") from None
    root = repo_root()
    built_from = (client.images.get(base).labels or {}).get("harness.source_hash")
    if root is not None and built_from not in (None, "unknown") and built_from != _source_hash(root)[:16]:
        # The agent inside would be older than this checkout: measurements may differ from what you read.
        echo(f"warning: {base} was built from other harness code than this checkout; "
             f"rebuild it with `harness build --framework {experiment.config.framework}`")
    digests = code_digests(experiment.path)
    files = sorted(digests)
    digest = experiment_hash(experiment, base_id, digests)
    tag = f"harness-{experiment.name}:{digest[:12]}"
    if not rebuild and image_exists(client, tag):
        return tag
    echo(f"Building experiment image {tag} on {base}")
    extra = []
    dockerfile = "Dockerfile"
    if "Dockerfile" not in files:
        dockerfile = ".harness.Dockerfile"
        extra.append((dockerfile, _fallback_dockerfile()))
    network = network or os.environ.get("HARNESS_BUILD_NETWORK") or "default"
    archive = create_archive(str(experiment.path), files=files, extra_files=extra)
    try:
        stream_build(client, echo=echo, what=tag, fileobj=archive, custom_context=True, dockerfile=dockerfile,
                     tag=tag, buildargs={"BASE_IMAGE": base}, pull=False, nocache=rebuild,
                     labels={"harness.experiment": experiment.name, "harness.content_hash": digest,
                             "harness.code_digest": combine_digests(digests), "harness.base_image": base},
                     network_mode=None if network == "default" else network)
    finally:
        archive.close()
    return tag


def list_images(client: "docker.DockerClient | None" = None) -> dict[str, str | None]:
    """Which framework images are built: tag -> short id (None when missing)."""
    client = client or docker_client()
    found: dict[str, str | None] = {}
    for fw in FRAMEWORKS:
        tag = framework_tag(fw)
        try:
            found[tag] = client.images.get(tag).short_id.split(":")[-1]
        except Exception:
            found[tag] = None
    return found


__all__ = ["assemble_framework_context", "bootstrap_base_image", "build_framework_images", "build_harness_wheel",
           "docker_client", "ensure_experiment_image", "experiment_hash", "framework_tag", "list_images"]
