"""A fake MNIST for the download tests: IDX files of random digits and an HTTP mirror on 127.0.0.1."""

from __future__ import annotations

import gzip
import http.server
import socket
import threading

import numpy as np

from genvar_helpers import data


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array in the IDX format MNIST uses."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def make_mnist_files(rng: np.random.Generator, n_train: int, n_test: int) -> dict[str, bytes]:
    """Gzipped IDX files of a small fake MNIST, named as the real mirrors name them: random bytes and labels."""
    files = {}
    for split, n in (("train", n_train), ("test", n_test)):
        names = data.MNIST_FILES[split]
        files[names["images"]] = gzip.compress(idx_bytes(rng.integers(0, 256, (n, 28, 28))))
        files[names["labels"]] = gzip.compress(idx_bytes(rng.integers(0, 10, n)))
    return files


class FakeMirror:
    """An HTTP server on 127.0.0.1 that serves given files and counts the requests it gets."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files, self.requests = dict(files), []
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                name = self.path.rsplit("/", 1)[-1]
                mirror.requests.append(name)
                body = mirror.files.get(name)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/mnist/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def dead_url() -> str:
    """A URL on 127.0.0.1 where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist/"
