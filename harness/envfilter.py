"""Which of the run's environment variables a results file may show, and how.

results.json and events.jsonl get shared (teammates, papers, issue trackers), so the manifest keeps
values only of an allow-list of variables that matter for reproducing a run (threads, CUDA, Python,
locale) and that do not look like credentials; every other variable is listed by name only.
Imported inside the container: the standard library only.
"""

from __future__ import annotations

import re
from typing import Any

# Prefixes (and exact names) whose values say how the run was set up.
ALLOWED_PREFIXES = ("CUDA_", "NVIDIA_", "OMP_", "MKL_", "TF_", "TORCH_", "PYTHON", "HARNESS_")
ALLOWED_NAMES = frozenset({"LANG", "TZ"})

# Names that hint at a credential: PASS covers PASSWD and PASSWORD, KEY covers API_KEY.
SECRET_NAME = re.compile(r"PASS|PWD|SECRET|TOKEN|KEY|CREDENTIAL|AUTH|SIG|COOKIE|SESSION|PRIVATE|CERT|"
                         r"_PAT$|^PAT_|DSN|CONN(ECTION)?_STR", re.IGNORECASE)
# Values that carry one: signed URLs and passwords in a URL's userinfo (postgres://user:pw@host).
SECRET_VALUE = re.compile(r"[?&](sig|signature|token|access_token|X-Amz-Signature|X-Goog-Signature)=|"
                          r"://[^/\s:@]+:[^/\s@]*@", re.IGNORECASE)


def is_secret(name: str, value: str) -> bool:
    """Whether a variable looks like a credential, by its name or by its value."""
    return bool(SECRET_NAME.search(name) or SECRET_VALUE.search(value))


def is_allowed(name: str) -> bool:
    """Whether a variable's value may be recorded at all (before the secret check)."""
    return name in ALLOWED_NAMES or name.startswith(ALLOWED_PREFIXES)


def env_manifest(env: dict[str, str]) -> dict[str, Any]:
    """``{"env": {allowed, non-secret name: value}, "env_names": [every other name]}``, sorted."""
    kept = {k: v for k, v in sorted(env.items()) if is_allowed(k) and not is_secret(k, v)}
    return {"env": kept, "env_names": sorted(k for k in env if k not in kept)}

