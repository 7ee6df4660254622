"""harness.nofollow and harness.diskspace on real files: links, FIFOs and folders are refused, never followed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.nofollow import NotARegularFile, create_append, open_file, read_bytes, read_text


def test_reads_a_regular_file_and_its_tail(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_bytes(b"0123456789")
    assert read_text(tmp_path / "a.log") == "0123456789"
    assert read_bytes(tmp_path / "a.log", tail=3) == b"789"
    assert read_bytes(tmp_path / "a.log", limit=2) == b"01"


@pytest.mark.parametrize("kind", ["symlink", "dangling", "fifo", "folder"])
def test_refuses_what_is_not_a_regular_file(tmp_path: Path, kind: str) -> None:
    victim = tmp_path / "victim"
    victim.write_text("host secret")
    name = tmp_path / "results.json"
    if kind == "symlink":
        name.symlink_to(victim)
    elif kind == "dangling":
        name.symlink_to(tmp_path / "absent")
    elif kind == "fifo":
        os.mkfifo(name)  # opening this for reading without O_NONBLOCK would hang the test
    else:
        name.mkdir()
    with pytest.raises(NotARegularFile):
        read_bytes(name)
    with pytest.raises(OSError):
        open_file(name, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    with pytest.raises(OSError):
        create_append(name)
    assert victim.read_text() == "host secret"
    assert not (tmp_path / "absent").exists()


def test_a_linked_folder_is_refused_too(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "stdout.log").write_text("x")
    (tmp_path / "run").symlink_to(tmp_path / "real")
    with pytest.raises(OSError):
        read_text(tmp_path / "run" / "stdout.log")


def test_a_log_created_before_the_run_stays_ours_when_its_name_is_swapped(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("host\n")
    fd = create_append(tmp_path / "stdout.log")
    (tmp_path / "link").symlink_to(victim)
    os.replace(tmp_path / "link", tmp_path / "stdout.log")  # what a container would do
    os.write(fd, b"container output\n")
    os.close(fd)
    assert victim.read_text() == "host\n"


def test_the_reserve_makes_room_for_one_more_write(tmp_path: Path) -> None:
    from harness.diskspace import Reserve, with_room

    reserve = Reserve(tmp_path / "reserve", size=4096)
    assert reserve.ensure() and (tmp_path / "reserve").stat().st_size == 4096
    calls = []

    def write() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        return "written"

    assert with_room(write, reserve) == "written" and len(calls) == 2
    assert not (tmp_path / "reserve").exists()
    with pytest.raises(OSError):
        with_room(lambda: (_ for _ in ()).throw(OSError(28, "No space left on device")), reserve)  # nothing left
