"""``rledger serve`` in a subprocess, on a free loopback port, for end-to-end tests.

::

    with running_server(db_url) as server:      # waits for GET /health to answer 200
        httpx.get(server.url + "/health")
    # the server (and any worker it forked) is stopped here, also when the body raised

The server runs in its own session (process group) and is stopped with
SIGTERM to the whole group (uvicorn shuts down gracefully), then SIGKILL
after a grace period; on Linux it also gets SIGTERM if the test process dies
first (``PR_SET_PDEATHSIG``), so no server outlives a run. Its stderr (uvicorn's
log) goes to a file, never an unread pipe that could fill and stall it:
when the body raises, the log's tail is attached to the exception as a note,
and :meth:`Server.log` reads it at any time (the ``served`` fixtures in the
tests print it at teardown, which pytest shows only for a failed test).

Profiling (for benchmarks): ``running_server(..., profile=PATH)`` runs the
same CLI under cProfile - this file's ``__main__`` - and writes the stats of
the event-loop thread to PATH and of the worker threads to PATH.threads when it
stops::

    python tests/server_process.py --profile OUT.prof serve --db ... --port ...
"""

from __future__ import annotations

import contextlib
import cProfile
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

__all__ = ["Server", "ServerStartError", "free_port", "running_server"]

HOST = "127.0.0.1"
START_TIMEOUT = 60.0  # seconds until /health must answer (imports, migrations check, bind)
STOP_TIMEOUT = 10.0  # seconds of graceful shutdown before SIGKILL
PORT_ATTEMPTS = 3  # a port picked free may be taken before the server binds it
LOG_TAIL = 60  # lines of the server's log shown with a failure


class ServerStartError(RuntimeError):
    """``rledger serve`` exited or did not answer GET /health in time."""


@dataclass
class Server:
    url: str  # http://127.0.0.1:PORT (no trailing slash)
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    profile: Path | None = None
    _closed: bool = field(default=False, repr=False)

    @property
    def graphql(self) -> str:
        return self.url + "/graphql"

    def log(self) -> str:
        """Everything the server wrote to stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"<no server log at {self.log_path}: {exc}>"

    def tail(self, lines: int = LOG_TAIL) -> str:
        text = "\n".join(self.log().splitlines()[-lines:])
        return text or "<the server wrote nothing to stderr>"


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (the caller retries on a clash)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the parent dies (Linux prctl)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):  # not Linux: the finally blocks still stop it
        pass


def _command(
    db_url: str, port: int, workers: int, profile: Path | None, extra: Sequence[str]
) -> list[str]:
    cli = ["serve", "--db", db_url, "--host", HOST, "--port", str(port), "--workers", str(workers)]
    if profile is not None:
        return [sys.executable, __file__, "--profile", str(profile), *cli, *extra]
    return [sys.executable, "-m", "producers.cli", *cli, *extra]


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, wait, then SIGKILL whatever is left."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_TIMEOUT)
    # Workers (--workers N) or stragglers of the group: never leave one behind.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    if process.poll() is None:
        process.wait(timeout=STOP_TIMEOUT)


def _wait_ready(server: Server, deadline: float) -> None:
    with httpx.Client(timeout=2.0) as client:
        while True:
            code = server.process.poll()
            if code is not None:
                raise ServerStartError(
                    f"`rledger serve` exited with code {code} before answering /health\n"
                    f"--- server log ---\n{server.tail()}"
                )
            try:
                response = client.get(server.url + "/health")
                if response.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"`rledger serve` did not answer GET /health with 200 within "
                    f"{START_TIMEOUT:.0f} s on {server.url}\n--- server log ---\n{server.tail()}"
                )
            time.sleep(0.05)


@contextlib.contextmanager
def running_server(
    db_url: str,
    *,
    workers: int = 1,
    env: Mapping[str, str] | None = None,
    profile: Path | None = None,
    extra_args: Sequence[str] = (),
    log_dir: Path | None = None,
) -> Iterator[Server]:
    """Start ``rledger serve --db db_url`` on a free loopback port; yield it once healthy.

    ``env`` adds to (and overrides) the inherited environment. The database
    must already hold a ledger (``rledger serve`` refuses an empty one).
    """
    child_env = {**os.environ, **(env or {})}
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    tmp = tempfile.TemporaryDirectory(prefix="rledger-serve-") if log_dir is None else None
    logs = Path(tmp.name) if tmp is not None else log_dir
    assert logs is not None
    server: Server | None = None
    try:
        for attempt in range(1, PORT_ATTEMPTS + 1):
            port = free_port()
            log_path = logs / f"serve-{port}.log"
            with log_path.open("wb") as log:
                process = subprocess.Popen(
                    _command(db_url, port, workers, profile, extra_args),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=child_env,
                    start_new_session=True,
                    preexec_fn=_die_with_parent if sys.platform == "linux" else None,
                )
            server = Server(f"http://{HOST}:{port}", port, process, log_path, profile)
            try:
                _wait_ready(server, time.monotonic() + START_TIMEOUT)
                break
            except ServerStartError:
                _stop(process)
                if attempt < PORT_ATTEMPTS and "address already in use" in server.log().lower():
                    continue
                raise
        assert server is not None
        try:
            yield server
        except BaseException as exc:
            exc.add_note(f"--- tail of the server log ({server.log_path}) ---\n{server.tail()}")
            raise
    finally:
        if server is not None:
            _stop(server.process)
        if tmp is not None:
            tmp.cleanup()


# --- cProfile wrapper: `python tests/server_process.py --profile OUT CLI-ARGS…` ---------


def _profiled_main(out: Path, cli_args: list[str]) -> int:
    """Run ``rledger CLI-ARGS`` under cProfile; on exit write the main thread's stats
    (uvicorn's event loop) to ``out`` and the other threads' (the ``to_thread``
    workers, e.g. ``Store.append``), merged, to ``out`` + ``.threads``."""
    import pstats

    threads: list[cProfile.Profile] = []
    lock = threading.Lock()

    def start_in_thread(*_: Any) -> None:
        # First profiler event of a new thread: replace this hook with a profiler of its own.
        profiler = cProfile.Profile()
        with lock:
            threads.append(profiler)
        profiler.enable()

    main_profile = cProfile.Profile()
    threading.setprofile(start_in_thread)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # until uvicorn installs its own
    from producers.cli import main

    code = 0
    main_profile.enable()
    try:
        main(cli_args, standalone_mode=False)
    except KeyboardInterrupt:
        pass
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        main_profile.disable()
        threading.setprofile(None)
        main_profile.dump_stats(str(out))
        with lock:
            merged: pstats.Stats | None = None
            for p in threads:
                with contextlib.suppress(TypeError):  # a thread that never ran Python code
                    if merged is None:
                        merged = pstats.Stats(p)
                    else:
                        merged.add(p)
        if merged is not None:
            merged.dump_stats(f"{out}.threads")
    return code


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) < 3 or args[0] != "--profile":
        sys.exit("usage: server_process.py --profile OUT.prof serve --db … [rledger serve options]")
    sys.exit(_profiled_main(Path(args[1]), args[2:]))
