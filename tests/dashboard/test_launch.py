"""dashboard.launch.serve: the one launcher of the browser test, the screenshots and the load benchmark."""
from __future__ import annotations

import socket
import urllib.request

import pytest

from dashboard import launch


def test_serve_answers_health_and_stops_the_server(tmp_path):
    with launch.serve({"DEEPFAKE_DATA": str(tmp_path)}, timeout=300) as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert urllib.request.urlopen(server.url + "/_stcore/health", timeout=10).read().strip() == b"ok"
        assert server.proc.poll() is None
    assert server.proc.poll() is not None  # stopped on exit
    with pytest.raises(OSError):
        urllib.request.urlopen(server.url + "/_stcore/health", timeout=5)


def test_a_server_that_cannot_start_is_an_error_with_its_log(monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setattr(launch, "free_port", lambda: taken.getsockname()[1])  # streamlit exits: port in use
        with pytest.raises(RuntimeError, match="streamlit did not start"):
            with launch.serve(timeout=300):
                pass
