"""The local backend's process handling: the agent in its own session, and nothing of it left behind.

The agent starts in a new session (a terminal's Ctrl-C reaches harness only) and puts the script
in a process group of its own inside that session. When the agent is gone - it ended, it hit the
timeout, or someone ``kill -9``'d it - every process still in its session is killed (the script
and its workers, which would otherwise run on as orphans), and so is every process still holding
the run's stdout pipe (a ``setsid`` grandchild that left the session): output is read until the
pipe is closed or, at the latest, a moment after the agent is gone, never until a stray process
decides to exit.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import threading
import time
from typing import Callable

STOP_TIMEOUT = 10  # seconds between the agent's SIGTERM and SIGKILL of its session
DRAIN_SECONDS = 2.0  # how long to keep reading after the agent and its leftovers are gone

Echo = Callable[[str], None]


def _holds_pipe(pid: int, link: str) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == link:
                return True
        except OSError:
            continue
    return False


def leftovers(session: int, pipe_inode: int | None) -> list[int]:
    """Processes of the run that outlived its agent: in its session, or holding its stdout pipe."""
    me = os.getpid()
    link = f"pipe:[{pipe_inode}]" if pipe_inode is not None else None
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        pid = int(entry)
        try:
            in_session = os.getsid(pid) == session
        except OSError:
            continue
        if in_session or (link is not None and _holds_pipe(pid, link)):
            found.append(pid)
    return found


def kill_leftovers(session: int, pipe_inode: int | None) -> int:
    """SIGKILL the run's leftovers (see :func:`leftovers`); returns how many were signalled."""
    killed = 0
    for _ in range(3):  # a process may fork while we look: look again
        pids = leftovers(session, pipe_inode)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except OSError:
                pass
    return killed


class Pump(threading.Thread):
    """Reads the agent's output pipe into ``sink`` until EOF, or until :meth:`finish`'s deadline."""

    def __init__(self, fd: int, sink: Callable[[bytes], None]) -> None:
        super().__init__(name="harness-local-output", daemon=True)
        self.fd, self.sink = fd, sink
        self._deadline: float | None = None

    def finish(self, within: float) -> None:
        """Read what is there, then stop: at EOF, when the pipe goes quiet, or after ``within`` seconds."""
        self._deadline = time.monotonic() + within
        self.join(within + 1.0)

    def run(self) -> None:
        while True:
            done = self._deadline is not None
            if done and time.monotonic() > self._deadline:  # type: ignore[operator]
                return
            ready, _, _ = select.select([self.fd], [], [], 0.2)
            if not ready:
                if done:
                    return
                continue
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return
            self.sink(chunk)


def stop_agent(proc: subprocess.Popen[bytes], echo: Echo | None) -> None:
    """SIGTERM to the agent (it stops the script and records), SIGKILL to its session at the deadline."""
    if echo:
        echo(f"Stopping the run (up to {STOP_TIMEOUT} s; Ctrl-C again to kill it now)...")
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=STOP_TIMEOUT)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        kill_leftovers(proc.pid, None)
        proc.wait()


def supervise(proc: subprocess.Popen[bytes], sink: Callable[[bytes], None], echo: Echo | None) -> bool:
    """Pass the agent's output to ``sink`` until it and everything of its run are gone.

    Returns whether the user interrupted the run (Ctrl-C, which stops it as ``stop_agent`` does).
    """
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    pipe_inode = os.fstat(fd).st_ino
    pump = Pump(fd, sink)
    pump.start()
    interrupted = False
    try:
        try:
            # Wait without reaping: while the agent is a zombie its pid (our session id) cannot be reused.
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        except KeyboardInterrupt:
            interrupted = True
            stop_agent(proc, echo)
    finally:
        kill_leftovers(proc.pid, pipe_inode)  # the script, its workers, a setsid grandchild on our pipe
        proc.wait()
        pump.finish(DRAIN_SECONDS)
        if not pump.is_alive():  # else a writer we could not kill: the daemon thread keeps the fd
            proc.stdout.close()
    return interrupted
