"""The mode a new file should get: what a plain ``open()`` gives (0666 less the umask).

Files written through ``mkstemp`` start 0600, which hides results from a teammate's ``compare``
on a shared folder; writers set this mode on them before the rename.
"""

from __future__ import annotations

import os
import threading

_UMASK_LOCK = threading.Lock()


def umask() -> int:
    """The process's umask, read without changing it where the kernel tells (Linux >= 4.7).

    Elsewhere it is set and set back under a lock; a thread that creates a file meanwhile
    (the sampler) could still see the temporary value, which is why /proc comes first.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def new_file_mode() -> int:
    """0666 less the umask: 0644 under the usual 022."""
    return 0o666 & ~umask()
