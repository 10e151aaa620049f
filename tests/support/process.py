"""Child processes for the tests and the bench: start one, wait until it listens, stop it by its PID.

A child's stdout and stderr go to files in a folder the caller gives: a pipe that nobody reads
fills up and blocks the child, and a file can be read again after the child has gone. Every wait
polls those files (or a condition, such as an HTTP answer) in a loop bounded both in attempts and
in time, and fails loudly, with the tail of the child's output, when the child exits first or the
time runs out.
"""

from __future__ import annotations

import math
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal, TypeVar

T = TypeVar("T")
Stream = Literal["stdout", "stderr"]

START_TIMEOUT = 60.0  # seconds a child may take to print that it is ready
STOP_TIMEOUT = 30.0  # seconds between SIGTERM and SIGKILL
POLL_INTERVAL = 0.1
TAIL_CHARS = 2000
# What the exporter logs for each address once it listens: "listening on HOST:PORT", an IPv6
# host in brackets ("listening on [::1]:10267"), as a URL writes it.
LISTENING = r"listening on (\S+):(\d+)"


class WaitFailed(AssertionError):
    """What was awaited did not happen: the time ran out, or the process exited first."""


def poll(
    condition: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = POLL_INTERVAL,
    what: str,
    describe: Callable[[], str] = lambda: "",
) -> T:
    """Call ``condition`` until it returns something other than None or False.

    Bounded by ``timeout`` seconds and by ``timeout / interval`` attempts, whichever comes first;
    fails with ``what`` and ``describe()`` (for example a log tail) otherwise.
    """
    attempts = max(1, math.ceil(timeout / interval))
    deadline = time.monotonic() + timeout
    last: T | None = None
    for _ in range(attempts):
        last = condition()
        if last is not None and last is not False:
            return last
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    raise WaitFailed(f"timed out waiting for {what} (last: {last!r})\n{describe()}")


def run(
    argv: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """``argv`` run to its end, its output captured as text; a non-zero exit code is returned.

    ``env`` replaces the environment when given, as for :class:`Child`.
    """
    return subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=None if env is None else dict(env),
    )


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago, for a child that cannot bind port 0."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Child:
    """``argv`` running with its output in ``folder``/``name``.out and ``.err``; stopped on exit.

    ``env`` replaces the environment when given (as for :class:`subprocess.Popen`); stdin is
    ``/dev/null``.
    """

    def __init__(
        self,
        argv: Sequence[str],
        folder: Path,
        name: str,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.stdout_path = folder / f"{name}.out"
        self.stderr_path = folder / f"{name}.err"
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=None if env is None else dict(env),
                cwd=cwd,
            )

    def __enter__(self) -> Child:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        """The exit code, or None while the child runs."""
        return self.process.poll()

    def output(self, stream: Stream = "stdout") -> str:
        """Everything the child has written to ``stream`` so far."""
        path = self.stdout_path if stream == "stdout" else self.stderr_path
        return path.read_text(encoding="utf-8", errors="replace")

    def tail(self, chars: int = TAIL_CHARS) -> str:
        """The end of both streams, to explain a failure."""
        return "".join(
            f"{self.name} {stream} (tail):\n{self.output(stream)[-chars:]}\n"
            for stream in ("stdout", "stderr")
        )

    def wait_until(
        self,
        condition: Callable[[], T | None],
        *,
        what: str,
        timeout: float = START_TIMEOUT,
        interval: float = POLL_INTERVAL,
    ) -> T:
        """Poll ``condition`` until it holds (see :func:`poll`); fail if the child exits first."""

        def attempt() -> T | None:
            exited = self.process.poll() is not None  # first: what it did before exiting counts
            found = condition()
            if exited and (found is None or found is False):
                raise WaitFailed(
                    f"{self.name} exited with {self.process.returncode} before {what}\n"
                    f"{self.tail()}"
                )
            return found

        return poll(
            attempt,
            timeout=timeout,
            interval=interval,
            what=f"{what} ({self.name})",
            describe=self.tail,
        )

    def wait_for(
        self, pattern: str, *, stream: Stream = "stdout", timeout: float = START_TIMEOUT
    ) -> re.Match[str]:
        """The first match of ``pattern`` (multi-line) in ``stream``, once the child prints it."""
        regex = re.compile(pattern, re.MULTILINE)
        return self.wait_until(
            lambda: regex.search(self.output(stream)),
            what=f"{pattern!r} on its {stream}",
            timeout=timeout,
        )

    def listening_address(self, timeout: float = START_TIMEOUT) -> tuple[str, int]:
        """The host and port of the exporter's first "listening on HOST:PORT" line on stderr."""
        return self.listening_addresses(1, timeout=timeout)[0]

    def listening_addresses(
        self, count: int, *, timeout: float = START_TIMEOUT
    ) -> list[tuple[str, int]]:
        """The hosts and ports of the first ``count`` "listening on" lines, once all are printed."""
        regex = re.compile(LISTENING)

        def found() -> list[tuple[str, int]] | None:
            lines = regex.findall(self.output("stderr"))[:count]
            return [(host, int(port)) for host, port in lines] if len(lines) == count else None

        return self.wait_until(
            found, what=f"{count} listening addresses on its stderr", timeout=timeout
        )

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the child's own PID, if it still runs."""
        if self.process.poll() is None:
            self.process.send_signal(signum)

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        """The exit code, once the child exits; :class:`subprocess.TimeoutExpired` otherwise."""
        return self.process.wait(timeout=timeout)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM to the child's PID, SIGKILL if it still runs after ``timeout``; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
        return self.process.returncode
