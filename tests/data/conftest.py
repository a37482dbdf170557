"""Fixtures for the data tests: the real data folder (or a skip) and a local HTTP server."""

from __future__ import annotations

import functools
import http.server
import os
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def data_root() -> Path:
    return Path(os.environ.get("CNNLANG_DATA") or REPO.parent / "shared" / "data")


@pytest.fixture
def mnist_root() -> Path:
    """The folder holding mnist/ with the four original files; skips when they are absent."""
    root = data_root()
    if not all((root / "mnist" / name).is_file() for name in MNIST_FILES):
        pytest.skip(f"the MNIST files are not in {root}/mnist (set CNNLANG_DATA to a folder with mnist/)")
    return root


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch):
    """serve(folder) -> base URL of a read-only HTTP server on 127.0.0.1 for that folder."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    servers = []

    def start(folder: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
