"""Data helpers: the full-MNIST download path against a real local HTTP server, the bundled subset, batches, toys."""

from __future__ import annotations

import gzip
import hashlib
import http.server
from pathlib import Path

import numpy as np
import pytest
import torch
from fake_mnist import FakeMirror, dead_url, make_mnist_files

from genvar_helpers import data

N_TRAIN, N_TEST = 12, 6


@pytest.fixture
def files() -> dict[str, bytes]:
    return make_mnist_files(np.random.default_rng(0), N_TRAIN, N_TEST)


@pytest.fixture
def mirror(files, monkeypatch, tmp_path):
    """Point the loader at a local server holding `files`, with their hashes pinned and a fresh cache."""
    server = FakeMirror(files)
    monkeypatch.setattr(data, "MNIST_MIRRORS", [server.url])
    monkeypatch.setattr(data, "MNIST_SHA256", {k: hashlib.sha256(v).hexdigest() for k, v in files.items()})
    monkeypatch.setattr(data, "EXPECTED_COUNT", {"train": N_TRAIN, "test": N_TEST})
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / "cache"))
    yield server
    server.close()


def test_full_download_parses_and_is_cached(mirror, files, capsys):
    first = data.load_mnist("train", source="full")
    assert first.source == "full" and first.images.shape == (N_TRAIN, 1, 28, 28)
    assert first.images.dtype == torch.float32 and 0 <= first.images.min() and first.images.max() <= 1
    raw = np.frombuffer(gzip.decompress(files["train-images-idx3-ubyte.gz"])[16:], np.uint8)
    assert torch.equal(first.images.flatten(), torch.from_numpy(raw.astype(np.float32) / 255))
    assert sorted(mirror.requests) == sorted(files), "the four files are fetched together, each once"
    second = data.load_mnist("train", source="full")
    test = data.load_mnist("test", source="full")
    assert len(mirror.requests) == 4, "later calls read the cache, not the network"
    assert len(test) == N_TEST
    assert torch.equal(first.labels, second.labels)
    assert "from the full source" in capsys.readouterr().out


def test_second_mirror_is_tried_when_first_is_dead(mirror, monkeypatch):
    monkeypatch.setattr(data, "MNIST_MIRRORS", [dead_url(), mirror.url])
    assert data.load_mnist("test", source="full").source == "full"


def test_a_failed_mirror_is_not_tried_first_for_the_next_files(mirror, monkeypatch):
    empty = FakeMirror({})
    monkeypatch.setattr(data, "MNIST_MIRRORS", [empty.url, mirror.url])
    try:
        assert data.load_mnist("test", source="full").source == "full"
    finally:
        empty.close()
    assert len(empty.requests) == 1, "the mirror that answered goes first for the other three files"


def test_corrupt_file_fails_hash_and_is_never_parsed(mirror, monkeypatch, tmp_path):
    mirror.files["t10k-images-idx3-ubyte.gz"] = b"not the file whose hash is pinned"
    parsed = []
    monkeypatch.setattr(data, "parse_idx", lambda path: parsed.append(path))
    with pytest.raises(data.MNISTDownloadError, match="t10k-images-idx3-ubyte.gz"):
        data.load_mnist("test", source="full")
    assert parsed == [], "a file that failed its hash must never be parsed"
    assert not (tmp_path / "cache" / "t10k-images-idx3-ubyte.gz").exists(), "nothing half-written is kept"


def test_dead_server_falls_back_under_auto_with_notice(mirror, monkeypatch, capsys):
    monkeypatch.setattr(data, "MNIST_MIRRORS", [dead_url()])
    fallback = data.load_mnist("test", source="auto")
    assert fallback.source == "bundled" and len(fallback) == 500
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "bundled" in out and "source='full'" in out
    assert "(ConnectionRefusedError)" in out, "the notice names why the download failed"


def test_dead_server_is_a_clear_error_under_full(mirror, monkeypatch):
    monkeypatch.setattr(data, "MNIST_MIRRORS", [dead_url()])
    with pytest.raises(data.MNISTDownloadError, match="could not download .* from any of 1 mirrors"):
        data.load_mnist("train", source="full")


def test_truncated_idx_is_a_clear_error(mirror, files, monkeypatch):
    name = "train-images-idx3-ubyte.gz"
    truncated = gzip.compress(gzip.decompress(files[name])[:-100])
    mirror.files[name] = truncated
    monkeypatch.setitem(data.MNIST_SHA256, name, hashlib.sha256(truncated).hexdigest())
    with pytest.raises(ValueError, match="truncated"):
        data.load_mnist("train", source="full")


def test_parse_idx_rejects_bad_magic(tmp_path):
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x0d\x01" + (3).to_bytes(4, "big") + b"abc"))
    with pytest.raises(ValueError, match="magic"):
        data.parse_idx(path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"split": "validation"}, "unknown split 'validation'.*train.*test"), ({"source": "web"}, "unknown source 'web'")],
)
def test_bad_arguments_say_what_is_allowed(kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.load_mnist(**kwargs)


def test_bundled_split_is_stratified_disjoint_and_deterministic():
    train, test = data.load_mnist("train", "bundled"), data.load_mnist("test", "bundled")
    assert (len(train), len(test)) == (4500, 500)
    assert torch.equal(train.labels.bincount(), torch.full((10,), 450))
    assert torch.equal(test.labels.bincount(), torch.full((10,), 50))
    index = data.bundled_split_indices()
    assert not set(index["train"]) & set(index["test"])
    assert np.array_equal(index["test"], data.bundled_split_indices()["test"])
    assert len(train.labels[:100].unique()) == 10, "the split is shuffled: its first digits span every class"
    assert train.images.shape == (4500, 1, 28, 28) and float(train.images.max()) == 1.0
    assert 0.08 < float(train.images.mean()) < 0.18, "real digits are mostly black background"


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path))
    assert data.cache_dir() == Path(tmp_path)


def test_tensor_batches_cover_each_item_once_per_epoch():
    x = torch.arange(10).float()
    batches = data.TensorBatches(x, x * 2, batch_size=3, drop_last=False, seed=1)
    seen = torch.cat([a for a, _ in batches])
    assert len(batches) == 4 and sorted(seen.tolist()) == list(range(10))
    assert all(torch.equal(b, a * 2) for a, b in batches), "tensors stay aligned"
    assert len(data.TensorBatches(x, batch_size=3)) == 3
    with pytest.raises(ValueError, match="same length"):
        data.TensorBatches(x, x[:5], batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        data.TensorBatches(x, batch_size=11)


def test_dataloader_route_yields_images_and_labels():
    test = data.load_mnist("test", "bundled")
    images, labels = next(iter(data.make_dataloader(test, batch_size=16)))
    assert images.shape == (16, 1, 28, 28) and labels.shape == (16,)


@pytest.mark.parametrize(
    ("make", "modes", "std"), [(data.ring_of_gaussians, 8, 0.01), (data.grid_of_gaussians, 25, 0.05)]
)
def test_toy_mixtures(make, modes, std):
    toy = make(4000, seed=0)
    assert toy.samples.shape == (4000, 2) and toy.centres.shape == (modes, 2) and toy.std == std
    distance = (toy.samples - toy.centres[toy.labels]).norm(dim=1)
    assert float(distance.max()) < 6 * std, "every sample lies near its own mode"
    assert len(toy.labels.unique()) == modes
    assert torch.equal(make(50, seed=3).samples, make(50, seed=3).samples)


def test_toy_geometry_matches_pacgan():
    ring = data.ring_of_gaussians(1, seed=0).centres
    assert torch.allclose(ring.norm(dim=1), torch.ones(8))
    grid = data.grid_of_gaussians(1, seed=0).centres
    assert sorted(set(grid[:, 0].tolist())) == [-4, -2, 0, 2, 4]


def test_bundled_cache_is_rebuilt_when_corrupt(monkeypatch, tmp_path):
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path))
    (tmp_path / "bundled_mnist_5k.npz").write_bytes(b"half a file")
    data._bundled_arrays.cache_clear()
    images, labels = data._bundled_arrays()
    assert images.shape == (5000, 784) and images.dtype == np.uint8 and np.bincount(labels).tolist() == [500] * 10
    with np.load(tmp_path / "bundled_mnist_5k.npz") as saved:
        assert np.array_equal(saved["labels"], labels), "the cache was rewritten whole"
    data._bundled_arrays.cache_clear()


# ---------------------------------------------------------------- cache, session memory and time limits (issue 17)


def cache_state(folder: Path) -> dict[str, tuple[int, int]]:
    """Name -> (size, mtime in ns) of every file in `folder`: equal before and after means nothing was written."""
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def make_read_only(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `folder` read-only: chmod, and (for root, whom chmod does not stop) any file creation in it raises.

    The simulation patches the ways pooch and this package create files (tempfile.NamedTemporaryFile,
    tempfile.mkstemp) so that they raise PermissionError for `folder`, as the operating system would, and
    makes pooch.retrieve raise it as older pooch releases do on a read-only folder even for a valid file.
    """
    for path in folder.iterdir():
        path.chmod(0o444)
    folder.chmod(0o555)
    import tempfile

    def refuse(real):
        def wrapper(*args, **kwargs):
            if Path(kwargs.get("dir") or ".").resolve() == folder.resolve():
                raise PermissionError(13, "Permission denied (read-only cache)", str(folder))
            return real(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse(tempfile.NamedTemporaryFile))
    monkeypatch.setattr(tempfile, "mkstemp", refuse(tempfile.mkstemp))

    def old_pooch(*args, **kwargs):  # older pooch releases test that the folder is writable before anything else
        raise PermissionError(13, "Pooch could not write to data cache folder", str(folder))

    monkeypatch.setattr(data.pooch, "retrieve", old_pooch)


@pytest.fixture
def writable_again(tmp_path):
    yield
    for path in [tmp_path / "cache", *(tmp_path / "cache").glob("*")]:
        if path.exists():
            path.chmod(0o755)


def test_read_only_cache_with_verified_files_is_used(mirror, monkeypatch, tmp_path, capsys, writable_again):
    data.load_mnist("train", source="full")  # fills the cache with the four verified files
    folder = tmp_path / "cache"
    make_read_only(folder, monkeypatch)
    before = cache_state(folder)
    monkeypatch.setattr(data, "MNIST_MIRRORS", [dead_url()])  # and no network either
    capsys.readouterr()
    for source in ("full", "auto"):
        test = data.load_mnist("test", source=source)
        assert test.source == "full" and len(test) == N_TEST, f"{source}: the verified cached copy is used"
    out = capsys.readouterr().out
    assert "bundled" not in out and "failed" not in out, out
    assert cache_state(folder) == before, "nothing is written to a read-only cache"


def test_corrupt_cached_file_is_named_with_its_path_and_fix(mirror, monkeypatch, tmp_path, capsys):
    data.load_mnist("test", source="full")
    bad = tmp_path / "cache" / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(b"half a download")
    monkeypatch.setattr(data, "MNIST_MIRRORS", [dead_url()])
    with pytest.raises(data.MNISTDownloadError) as info:
        data.load_mnist("test", source="full")
    message = str(info.value)
    assert "corrupt" in message and str(bad) in message and "delete" in message, message
    assert "no cached copy" not in message
    assert data.load_mnist("test", source="auto").source == "bundled"
    assert "corrupt" in capsys.readouterr().out, "the fallback notice says the cached copy is corrupt"


def test_corrupt_cached_file_is_replaced_when_a_mirror_answers(mirror, files, tmp_path):
    data.load_mnist("test", source="full")
    bad = tmp_path / "cache" / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(b"half a download")
    assert len(data.load_mnist("test", source="full")) == N_TEST
    assert bad.read_bytes() == files["t10k-images-idx3-ubyte.gz"]


def test_auto_prefers_a_cached_full_set_over_a_remembered_failure(mirror, files, capsys):
    mirror.files = {}  # the mirror answers 404: a transient failure
    assert data.load_mnist("train", source="auto").source == "bundled"
    mirror.files = dict(files)
    assert data.load_mnist("test", source="full").source == "full"  # the files are now cached
    capsys.readouterr()
    train, test = data.load_mnist("train", source="auto"), data.load_mnist("test", source="auto")
    assert (train.source, test.source) == ("full", "full"), "a verified cached full set beats a remembered failure"
    out = capsys.readouterr().out
    assert "full download failed" not in out, out


def test_auto_keeps_one_source_per_session_and_says_the_fallback_once(mirror, files, capsys):
    mirror.files = {}
    assert data.load_mnist("train", source="auto", verbose=False).source == "bundled"
    assert capsys.readouterr().out == "", "verbose=False says nothing"
    assert data.load_mnist("train", source="auto").source == "bundled"
    first = capsys.readouterr().out
    assert first.count("full download failed") == 1 and "(HTTP 404)" in first, "the first verbose load says why"
    mirror.files = dict(files)  # the network is back, but nothing was cached
    requests_before = len(mirror.requests)
    test = data.load_mnist("test", source="auto")
    assert test.source == "bundled", "test comes from the source train came from"
    assert len(mirror.requests) == requests_before, "no new wait on the network"
    second = capsys.readouterr().out
    assert "full download failed" not in second and "bundled" in second, second


class TrickleMirror(FakeMirror):
    """Sends the headers of a file, then one byte every `pause` seconds, for at most `seconds`."""

    def __init__(self, files: dict[str, bytes], pause: float = 0.25, seconds: float = 12.0) -> None:
        super().__init__(files)
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                import time

                body = mirror.files[self.path.rsplit("/", 1)[-1]]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                start = time.monotonic()
                try:
                    for i in range(len(body)):
                        if time.monotonic() - start > seconds:
                            return
                        self.wfile.write(body[i : i + 1])
                        self.wfile.flush()
                        time.sleep(pause)
                except OSError:  # the client gave up
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server.RequestHandlerClass = Handler


def _fail_within_limit(servers, files, monkeypatch, tmp_path):
    """Load the full set from `servers` (closed afterwards) under a 2 s limit; (the error, seconds it took)."""
    import time

    monkeypatch.setattr(data, "MNIST_MIRRORS", [server.url for server in servers])
    monkeypatch.setattr(data, "MNIST_SHA256", {k: hashlib.sha256(v).hexdigest() for k, v in files.items()})
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv("GENVAR_DOWNLOAD_LIMIT_S", "2")
    start = time.monotonic()
    try:
        with pytest.raises(data.MNISTDownloadError) as info:
            data.load_mnist("train", source="full")
    finally:
        for server in servers:
            server.close()
    return info, time.monotonic() - start


def test_download_has_an_overall_time_limit(files, monkeypatch, tmp_path):
    info, elapsed = _fail_within_limit([TrickleMirror(files)], files, monkeypatch, tmp_path)
    assert elapsed < 6, f"a trickling server must not stall the download ({elapsed:.1f} s)"
    assert "time limit" in str(info.value) and "GENVAR_DOWNLOAD_LIMIT_S" in str(info.value), str(info.value)
    folder = tmp_path / "cache"
    assert not folder.exists() or list(folder.iterdir()) == [], "no partial file is left in the cache"


class SilentMirror(FakeMirror):
    """Accepts each request, then sends nothing (`headers=False`) or its status line and headers a byte at a time."""

    def __init__(self, files: dict[str, bytes], headers: bool = False, seconds: float = 15.0) -> None:
        super().__init__(files)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                import time

                head = b"HTTP/1.1 200 OK\r\n" + b"X-Padding: " + b"a" * 200 + b"\r\n"
                start = time.monotonic()
                try:
                    for i in range(len(head) if headers else 0):
                        if time.monotonic() - start > seconds:
                            return
                        self.wfile.write(head[i : i + 1])
                        self.wfile.flush()
                        time.sleep(0.2)
                    time.sleep(max(0.0, seconds - (time.monotonic() - start)))
                except OSError:
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server.RequestHandlerClass = Handler


@pytest.mark.parametrize("headers", [False, True], ids=["hung server", "headers a byte at a time"])
def test_the_whole_download_has_one_time_limit(files, monkeypatch, tmp_path, headers):
    servers = [SilentMirror(files, headers=headers), SilentMirror(files, headers=headers)]
    info, elapsed = _fail_within_limit(servers, files, monkeypatch, tmp_path)
    assert elapsed < 5, f"two silent mirrors and four files stay within the 2 s limit, not 30 s each ({elapsed:.1f} s)"
    assert "2 s time limit" in str(info.value) and "GENVAR_DOWNLOAD_LIMIT_S" in str(info.value), str(info.value)
    folder = tmp_path / "cache"
    assert not folder.exists() or not any(p.suffix == ".gz" for p in folder.iterdir()), "no file lands in the cache"
