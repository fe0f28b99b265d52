"""Start the dashboard as a real server: ``streamlit run streamlit_app.py`` on a free local port.

The one launcher of the end-to-end browser test, ``scripts/screenshots.py`` and ``bench/load.py``. It needs a
source checkout (``streamlit_app.py`` and ``app_pages/`` beside the packages)::

    with serve({"DEEPFAKE_DATA": "/tmp/empty"}) as server:
        ...  # server.url, server.proc (the streamlit process)
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import IO, Iterator

REPO = Path(__file__).resolve().parent.parent
APP = REPO / "streamlit_app.py"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")  # the browser the tests, screenshots and benchmark drive


@dataclasses.dataclass
class Server:
    url: str
    proc: subprocess.Popen
    log: IO[bytes]  # the server's stdout and stderr

    def log_tail(self, chars: int = 2000) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-chars:]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        return urllib.request.urlopen(url + "/_stcore/health", timeout=2).read().strip() == b"ok"
    except OSError:
        return False


@contextlib.contextmanager
def serve(env: dict[str, str] | None = None, timeout: float = 180.0) -> Iterator[Server]:
    """Run the app with ``env`` added to this process's environment; yields once ``/_stcore/health`` answers
    ``ok`` (RuntimeError with the server's log if it exits or is not healthy within ``timeout`` s), and stops
    the server on exit (terminate, then kill after 15 s)."""
    if not APP.is_file():
        raise FileNotFoundError(f"{APP} not found: the dashboard runs from a source checkout")
    port = free_port()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(APP.name), "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true",
                             "--browser.gatherUsageStats", "false"], cwd=REPO, env={**os.environ, **(env or {})},
                            stdout=log, stderr=log)
    server = Server(f"http://127.0.0.1:{port}", proc, log)
    try:
        deadline = time.monotonic() + timeout
        while not _healthy(server.url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not start: {server.log_tail()}")
            time.sleep(0.5)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)
        log.close()
