"""Processes and their trees: free ports, waiting on a health URL, stopping a process with
every descendant (Ray's included), by PID."""

from __future__ import annotations

import io
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType
from typing import TextIO

import psutil

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ERROR = re.compile(r"ERROR|Errno|\w(Error|Exception): ")


def strip_ansi(text: str) -> str:
    """``text`` without terminal colour codes."""
    return _ANSI.sub("", text)


def last_error_line(text: str) -> str | None:
    """The last line of ``text`` that reports an error (colour codes removed), if any."""
    errors = [ln.strip() for ln in strip_ansi(text).splitlines() if _ERROR.search(ln)]
    return errors[-1] if errors else None


def last_error(log: Path) -> str | None:
    """The last line of the file ``log`` that reports an error, if any."""
    return last_error_line(log.read_text(errors="replace")) if log.exists() else None


class LaunchError(RuntimeError):
    """A Flower process could not be started or the run failed; one-line message."""


_interrupted = False
_signal = 0  # the signal that interrupted the run


def on_interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGINT and SIGTERM: raise ``KeyboardInterrupt``, and remember it. CPython runs a
    signal's handler wherever the main thread is, finalisers included, and an exception
    raised in a finaliser is printed ("Exception ignored in ...") and dropped: the run
    would go on as if Ctrl-C had never come (seen in CI). The launcher's loops call
    :func:`check_interrupted`, so a dropped interrupt still stops the run."""
    global _interrupted, _signal
    _interrupted = True
    _signal = _signal or signum
    raise KeyboardInterrupt


def check_interrupted() -> None:
    """Raise ``KeyboardInterrupt`` if SIGINT or SIGTERM came (see :func:`on_interrupt`)."""
    if _interrupted:
        raise KeyboardInterrupt


def interrupting_signal() -> str:
    """The name of the signal that interrupted this process (``SIGINT`` for Ctrl-C, also
    when Python raised ``KeyboardInterrupt`` before our handler was installed)."""
    return signal.Signals(_signal).name if _signal else "SIGINT"


def refused(address: str, timeout_s: float = 5.0) -> str | None:
    """Why ``host:port`` does not accept a TCP connection (the system's reason), or None when it
    does; ``ValueError`` for an address that is not ``host:port``."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(address)
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        return str(e.strerror or e)
    return None


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_tree(proc: subprocess.Popen[bytes], grace_s: float = 5.0, force: bool = False) -> None:
    """Terminate ``proc`` and all its descendants (SIGTERM, then SIGKILL after grace).

    ``force``: SIGKILL at once, for processes with nothing left to save (Flower's
    simulation process and Ray's actors take ~4 s to honour SIGTERM)."""
    try:
        root = psutil.Process(proc.pid)
        procs = [*root.children(recursive=True), root]
    except psutil.NoSuchProcess:
        procs = []
    for p in procs:
        with suppress(psutil.NoSuchProcess):
            p.kill() if force else p.terminate()
    alive = wait_dead(procs, grace_s)
    for p in alive:
        with suppress(psutil.NoSuchProcess):
            p.kill()
    wait_dead(alive, grace_s)
    if proc.poll() is None:
        proc.wait(timeout=grace_s)


def _dead(p: psutil.Process) -> bool:
    try:
        return p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def marked_processes(marks: tuple[str, ...]) -> list[psutil.Process]:
    """Processes (not this one) whose command line contains one of ``marks``, e.g. the temp
    folder and address of a Ray cluster this program started: found by what is ours only,
    so that they can be stopped by PID (``ray stop`` would stop other users' Ray too)."""
    me, found = psutil.Process().pid, []
    for p in psutil.process_iter(["cmdline"]):
        with suppress(psutil.Error):
            if p.pid != me and any(m in " ".join(p.info["cmdline"] or []) for m in marks):
                found.append(p)
    return found


def wait_dead(procs: list[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """Wait up to ``timeout_s`` for ``procs`` to die; those still running.

    A zombie counts as dead: it holds nothing but its pid. Orphaned descendants (Ray's
    processes, once their parent is gone) are reaped by init when it gets to it, ~2 s
    later on the development machine, which ``psutil.wait_procs`` would wait for."""
    deadline = time.monotonic() + timeout_s
    alive = [p for p in procs if not _dead(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = [p for p in alive if not _dead(p)]
    return alive


@contextmanager
def process_group() -> Iterator[list[subprocess.Popen[bytes]]]:
    """A list to append started processes to; all are stopped on exit, whatever happens."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        yield procs
    finally:
        for p in reversed(procs):
            stop_tree(p)


def wait_http(
    url: str, proc: subprocess.Popen[bytes], name: str, log: Path, *, ca: Path | None = None,
    timeout_s: float = 60.0,
) -> None:  # fmt: skip
    """Wait until ``url`` answers (trusting ``ca`` for https), failing early if ``proc`` exits."""
    ctx = ssl.create_default_context(cafile=str(ca)) if ca else None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            why = last_error(log) or "no error in its log"
            raise LaunchError(f"{name} exited with code {proc.returncode}: {why} (log: {log})")
        try:
            with urllib.request.urlopen(url, timeout=1, context=ctx) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise LaunchError(f"{url} did not answer within {timeout_s:.0f} s (see {log})")


class ProgressView:
    """Prints a run's lines; its progress lines (``[fedwsa] progress ...``, several per
    round) as one live line rewritten in place on a terminal, and at most one every
    ``every_s`` seconds as plain lines elsewhere (CI, log files). About 20 lines, so no
    progress-bar library: the events are the ServerApp's own lines, parsed here."""

    MARK = "[fedwsa] progress "

    def __init__(self, stream: TextIO | None = None, every_s: float = 10.0) -> None:
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.every_s, self.live, self.last = every_s, False, float("-inf")

    def show(self, line: str) -> None:
        if self.MARK not in line:
            if self.live:
                self.stream.write("\r\x1b[K")
                self.live = False
            self.stream.write(line + "\n")
        elif self.tty:
            self.stream.write("\r\x1b[K" + line.split(self.MARK, 1)[1][:150])
            self.live = True
        elif time.monotonic() - self.last >= self.every_s:
            self.stream.write(line + "\n")
            self.last = time.monotonic()
        self.stream.flush()


class LineWriter(io.TextIOBase):
    """A text stream that hands each complete line to ``sink`` (to show a process's own
    prints through a :class:`ProgressView`)."""

    def __init__(self, sink: Callable[[str], None]) -> None:
        self.sink, self.buffer = sink, ""

    def write(self, text: str) -> int:
        self.buffer += text
        *lines, self.buffer = self.buffer.split("\n")
        for line in lines:
            self.sink(line)
        return len(text)
