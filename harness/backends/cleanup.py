"""Finding and stopping what a plan left running: containers by their label, local agents by their argv.

A ``harness run`` that was SIGKILLed (or lost its terminal) leaves its runs going: containers
labelled ``harness.plan_id=<id>``, and local agents in their own sessions whose command line
carries ``--plan-id <id>``. The plan's code asks for this by plan id and never needs to know
which backend ran what.
"""

from __future__ import annotations

from harness.engine import ContainerInfo, clean_containers, docker_client, list_containers
from harness.errors import EngineUnavailableError

AGENT_STOP_TIMEOUT = 15  # seconds between SIGTERM to an agent (it records the run) and SIGKILL


def _plan_containers(plan_id: str, include_stopped: bool) -> list[ContainerInfo]:
    try:
        return list_containers(include_stopped=include_stopped, plan_id=plan_id)
    except (EngineUnavailableError, ImportError):  # no engine, or no docker SDK: then there are none
        return []


def stop_local_agents(plan_id: str) -> int:
    """Stop local-backend agents of this plan (and their scripts); returns how many agents there were.

    An agent is recognised by its command line (``-m harness.agent ... --backend local ...
    --plan-id <id>``); agents inside containers are left to the engine.
    """
    import psutil

    agents = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if "harness.agent" in cmdline and _flag(cmdline, "--plan-id") == plan_id \
                and _flag(cmdline, "--backend") == "local":
            agents.append(proc)
    family = []
    for agent in agents:
        try:
            family += [agent, *agent.children(recursive=True)]
        except psutil.Error:
            pass
    for p in family:
        try:
            p.terminate()  # the agent stops its script and records the run as interrupted
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(family, timeout=AGENT_STOP_TIMEOUT)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    return len(agents)


def _flag(cmdline: list[str], name: str) -> str | None:
    """The value after ``name`` in an agent's command line (before its ``--``)."""
    head = cmdline[: cmdline.index("--")] if "--" in cmdline else cmdline
    try:
        return head[head.index(name) + 1]
    except (ValueError, IndexError):
        return None


def cleanup_plan(plan_id: str) -> int:
    """Remove what a dead ``harness run`` of this plan left behind; returns how many containers went.

    0 containers when no Docker engine answers (then there can be none).
    """
    removed = 0
    leftovers = _plan_containers(plan_id, include_stopped=True)
    if leftovers:
        removed = clean_containers(leftovers)
    stop_local_agents(plan_id)
    return removed


def stop_plan(plan_id: str) -> None:
    """Ctrl-C during a parallel plan: stop every run of it in flight, letting each agent record what it has.

    Containers get ``docker stop`` (SIGTERM, then SIGKILL); local agents SIGTERM, then SIGKILL.
    Their runs count as interrupted (harness stopped them), not as killed from outside.
    """
    from harness.backends.settle import STOPPING

    STOPPING.add(plan_id)
    infos = _plan_containers(plan_id, include_stopped=False)
    if infos:
        client = docker_client()
        for info in infos:
            try:
                client.containers.get(info.id).stop(timeout=10)
            except Exception:  # noqa: BLE001 - gone already, or the engine is going away: keep stopping others
                pass
    stop_local_agents(plan_id)
