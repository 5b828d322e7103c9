"""Benchmark: train the MNIST models of notebooks 04-07 and 10's cluster GAN for one fixed budget and measure them.

    python -m genvar_helpers.bench            # full budget, also times every notebook in quick mode
    python -m genvar_helpers.bench --quick    # a small budget, < 2 minutes on 2 CPU cores
    python -m genvar_helpers.bench --readme bench_results/cpu.json   # rewrite README's results table

Each model sees the same number of training images (the budget) on the current device.
The table gives training images/s, wall time and the series' protocol (`metrics.evaluate_protocol`: unseen
test digits, several draws, means), with the confident share beside real digits' (plus the IWAE log-likelihood
for the VAEs). It also times the same DCGAN training fed by a plain
`DataLoader` and by on-device `TensorBatches`, and reports the ratio. Results go to the screen and
to a JSON file; `--readme` turns that JSON into README.md's results table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from . import conditional, gan, hybrid, metrics, vae
from .checkpoints import load_trained
from .data import TensorBatches, load_mnist, make_dataloader
from .runtime import environment_report, get_device, seed_everything

ROOT = Path(__file__).resolve().parent.parent
# The recipes of notebooks 04 (MLP GAN) and 05 (DCGAN), without their EMA generators: the benchmark
# scores the trained G itself. Each recipe names its loop: 04 trains with the plain `train_gan_basic`, 05 with
# `train_gan` and its options. tests/test_bench.py reads the notebooks' training cells and holds them equal.
GAN_MLP_DISCRIMINATOR = {"dropout": 0.3, "minibatch_std": True}
GAN_MLP_LOOP = "train_gan_basic"
GAN_MLP_TRAINING = {"lr": 2e-4}
DCGAN_DISCRIMINATOR = {"ndf": 32, "minibatch_std": True, "spectral_norm": True}
DCGAN_LOOP = "train_gan"
DCGAN_TRAINING = {"lr": 2e-4, "lr_d": 4e-4, "augment": None}
# Notebook 10's cluster GAN: notebook 09's cGAN on k-means clusters of the committed MLP VAE's codes (no labels);
# the VAE's own training is not part of the budget. tests/test_bench.py holds it equal to notebook 10's cell.
CLUSTER_GAN_CODER = "vae_mlp"
CLUSTER_GAN_CLUSTERS = 50
CLUSTER_GAN_DISCRIMINATOR = {"ndf": 32}
CLUSTER_GAN_TRAINING = {"lr": 2e-4, "lr_d": 4e-4}
README_START, README_END = "<!-- bench:start -->", "<!-- bench:end -->"


def train_for_budget(name: str, budget: int, data: torch.Tensor, device: torch.device) -> tuple[Any, float, float]:
    """Train the series model `name` on `budget` images of `data`: (model, seconds, training images/s)."""
    if name not in TRAINERS:
        raise ValueError(f"unknown model {name!r}; the benchmark trains {sorted(TRAINERS)}")
    return TRAINERS[name](name, budget, data, device)


def _train_gan(name: str, budget: int, data: torch.Tensor, device: torch.device) -> tuple[Any, float, float]:
    seed_everything(0)
    if name == "gan_mlp":
        generator, discriminator = gan.MLPGenerator(), gan.MLPDiscriminator(**GAN_MLP_DISCRIMINATOR)
        loop, options = GAN_MLP_LOOP, GAN_MLP_TRAINING
    else:
        generator, discriminator = gan.DCGANGenerator(), gan.DCGANDiscriminator(**DCGAN_DISCRIMINATOR)
        loop, options = DCGAN_LOOP, DCGAN_TRAINING
    generator, discriminator = generator.to(device), discriminator.to(device)
    batches = TensorBatches(data, batch_size=64, device=device, seed=0)
    train: Callable[..., gan.GANRun] = getattr(gan, loop)
    run = train(generator, discriminator, batches, steps=max(1, budget // 64), progress=False, **options)
    return generator, run.seconds, run.images_per_second


def _train_cluster_gan(name: str, budget: int, data: torch.Tensor, device: torch.device) -> tuple[Any, float, float]:
    seed_everything(0)
    coder = load_trained(CLUSTER_GAN_CODER, device=device)
    clusters, shares = hybrid.cluster_codes(coder, data, k=CLUSTER_GAN_CLUSTERS, seed=0)
    generator = hybrid.ClusterConditionalGenerator(n_classes=CLUSTER_GAN_CLUSTERS).to(device)
    discriminator = conditional.ProjectionDiscriminator(n_classes=CLUSTER_GAN_CLUSTERS, **CLUSTER_GAN_DISCRIMINATOR)
    batches = TensorBatches(data, clusters, batch_size=64, device=device, seed=0)
    run = conditional.train_cgan(generator, discriminator.to(device), batches, steps=max(1, budget // 64),
                                 ema_decay=None, progress=False, **CLUSTER_GAN_TRAINING)  # fmt: skip
    generator.cluster_shares.copy_(shares)
    return generator, run.seconds, run.images_per_second


def _train_vae(name: str, budget: int, data: torch.Tensor, device: torch.device) -> tuple[Any, float, float]:
    seed_everything(0)
    model = (vae.MLPVAE() if name == "vae_mlp" else vae.ConvVAE()).to(device)
    epochs = max(1, math.ceil(budget / len(data)))
    start = time.perf_counter()
    # KL warm-up as in notebooks 06-07: without it a short run stays on the "average digit" plateau.
    vae.train_vae(model, data, epochs=epochs, batch_size=64, warmup_epochs=min(2, epochs), progress=False)
    seconds = time.perf_counter() - start
    return model, seconds, epochs * (len(data) // 64) * 64 / seconds


TRAINERS: dict[str, Callable[[str, int, torch.Tensor, torch.device], tuple[Any, float, float]]] = {
    "gan_mlp": _train_gan,
    "dcgan": _train_gan,
    "cluster_gan": _train_cluster_gan,
    "vae_mlp": _train_vae,
    "vae_conv": _train_vae,
}


PROTOCOL_MEASURES = (
    "classes_present",
    "kl_from_uniform",
    "fd",
    "fd_real_floor",
    "fd_ratio",
    "precision",
    "recall",
    "confident_share",
    "real_confident_share",
)


def bench_models(budget: int, n_eval: int, iwae_k: int, device: torch.device, draws: int = 3) -> list[dict[str, Any]]:
    """Train each model on `budget` training images and score it with the series' protocol; one dict per model."""
    train, test = load_mnist("train"), load_mnist("test")
    classifier = metrics.load_classifier(device)
    rows = []
    for name in TRAINERS:
        print(f"bench: training {name} on {budget:,} images ...", flush=True)
        model, seconds, images_per_second = train_for_budget(name, budget, train.images, device)
        row = {"model": name, "train_images": budget, "train_seconds": round(seconds, 1)}
        row["train_images_per_s"] = round(images_per_second, 1)
        start = time.perf_counter()
        scores = metrics.evaluate_protocol(
            model.sample, n=n_eval, draws=draws, source=train.source, classifier=classifier
        )
        row.update({measure: round(scores[measure]["mean"], 4) for measure in PROTOCOL_MEASURES})
        row.update(protocol_n=scores["n"], protocol_draws=draws)
        if name.startswith("vae"):
            ll = metrics.iwae_log_likelihood(model, test.images, k=iwae_k)
            row["test_nll_nats"] = round(ll["nll_nats"], 2)
            row["iwae_k"] = iwae_k
        row["eval_seconds"] = round(time.perf_counter() - start, 1)
        rows.append(row)
    return rows


def bench_data_feeding(steps: int, device: torch.device) -> dict[str, Any]:
    """Time the same DCGAN training fed by a DataLoader and by on-device TensorBatches."""
    train = load_mnist("train", verbose=False)
    timings = {}
    for route in ("dataloader", "on_device"):
        seed_everything(0)
        generator = gan.DCGANGenerator().to(device)
        discriminator = gan.DCGANDiscriminator(**DCGAN_DISCRIMINATOR).to(device)
        if route == "dataloader":
            batches: Any = ((x.to(device), y.to(device)) for x, y in _cycle(make_dataloader(train, 64)))
        else:
            batches = _cycle(TensorBatches(train.images, train.labels, batch_size=64, device=device))
        run = gan.train_gan(
            generator, discriminator, _Limited(batches, steps), steps=steps, progress=False, **DCGAN_TRAINING
        )
        timings[route] = run.images_per_second
    return {
        "steps": steps,
        "dataloader_images_per_s": round(timings["dataloader"], 1),
        "on_device_images_per_s": round(timings["on_device"], 1),
        "speedup": round(timings["on_device"] / timings["dataloader"], 2),
    }


def _cycle(loader: Any) -> Any:
    while True:
        yield from loader


class _Limited:
    """The first `steps` items of an endless iterable, with a len() so train_gan can count them."""

    def __init__(self, source: Any, steps: int) -> None:
        self.source, self.steps = source, steps

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Any:
        return itertools.islice(self.source, self.steps)


def bench_notebooks(notebooks: list[Path], timeout: int = 600) -> dict[str, float]:
    """Wall time of each notebook executed top to bottom in quick mode (a fresh kernel each)."""
    times = {}
    env = dict(os.environ, GENVAR_QUICK="1")
    for path in notebooks:
        print(f"bench: running {path.name} in quick mode ...", flush=True)
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", "--stdout",
             f"--ExecutePreprocessor.timeout={timeout}", str(path)],
            env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        times[path.name] = round(time.perf_counter() - start, 1)
    return times


def committed_run_times(notebooks: list[Path]) -> dict[str, float | None]:
    """Wall time of the full-mode run whose outputs each notebook carries, from its cells' execution timestamps."""
    from datetime import datetime

    times: dict[str, float | None] = {}
    for path in notebooks:
        cells = json.loads(path.read_text())["cells"]
        stamps = [c.get("metadata", {}).get("execution", {}) for c in cells if c["cell_type"] == "code"]
        starts = [s["iopub.execute_input"] for s in stamps if "iopub.execute_input" in s]
        ends = [s["shell.execute_reply"] for s in stamps if "shell.execute_reply" in s]
        if not starts or not ends:
            times[path.name] = None
            continue
        first, last = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (min(starts), max(ends)))
        times[path.name] = round((last - first).total_seconds(), 1)
    return times


def format_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of the per-model results."""
    header = (
        "| model | images/s | train s | classes | KL | FD (floor) | precision | recall | confident (real) "
        "| test NLL (nats) |"
    )
    lines = [header, "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        nll = f"{r['test_nll_nats']:.1f} (k={r['iwae_k']})" if "test_nll_nats" in r else "—"
        confident = f"{r['confident_share']:.2f} ({r['real_confident_share']:.2f})" if "confident_share" in r else "—"
        lines.append(
            f"| {r['model']} | {r['train_images_per_s']:.0f} | {r['train_seconds']:.0f} "
            f"| {r['classes_present']:.3g}/10 | {r['kl_from_uniform']:.3f} | {r['fd']:.2f} ({r['fd_real_floor']:.2f}) "
            f"| {r['precision']:.2f} "
            f"| {r['recall']:.2f} | {confident} | {nll} |"
        )
    return "\n".join(lines)


def format_report(results: dict[str, Any]) -> str:
    """The whole result as Markdown: where it ran, the model table, data feeding and notebook times."""
    env, feed = results["environment"], results["data_feeding"]
    parts = [
        f"Measured by `{results['command']}` on {results['date']}: {env['device']}"
        f"{' (' + env['gpu'] + ')' if 'gpu' in env else ''}, {env['cpu_threads']} CPU threads, torch {env['torch']}, "
        f"{results['data']} MNIST; budget {results['budget']:,} training images per model; "
        + (
            f"protocol: {results['protocol']}."
            if "protocol" in results
            else f"metrics over {results['n_eval']} samples against real training digits."
        ),
        "",
        format_table(results["models"]),
        "",
        f"Data feeding (DCGAN, {feed['steps']} steps): DataLoader {feed['dataloader_images_per_s']:.0f} images/s, "
        f"on-device batches {feed['on_device_images_per_s']:.0f} images/s, ratio {feed['speedup']:.2f}x.",
    ]
    quick, full = results.get("notebooks_quick_s", {}), results.get("notebooks_committed_full_s", {})
    if quick or full:
        measured = results.get("notebooks_quick_s_measured")
        quick_from = f"quick mode, run of {measured} (s)" if measured else "quick mode, measured here (s)"
        parts += [
            "",
            f"| notebook | {quick_from} | full mode, the committed run (s) |",
            "|---|---|---|",
        ]
        for name in sorted(set(quick) | set(full)):
            q, f = quick.get(name), full.get(name)
            parts.append(f"| {name} | {'—' if q is None else f'{q:.0f}'} | {'—' if f is None else f'{f:.0f}'} |")
    return "\n".join(parts)


def update_readme(results: dict[str, Any], readme: Path = ROOT / "README.md") -> None:
    """Replace the text between the bench markers of README.md with the report of `results`."""
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        raise ValueError(f"{readme} needs the markers {README_START} and {README_END} around the results table")
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    readme.write_text(f"{head}{README_START}\n{format_report(results)}\n{README_END}{tail}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small budget, no notebook runs (< 2 min on 2 cores)")
    parser.add_argument("--out", type=Path, help="JSON file (default bench_results/<device>[-quick].json)")
    parser.add_argument("--device", help="cuda, mps or cpu (default: the first available)")
    parser.add_argument("--no-notebooks", action="store_true", help="skip timing the notebooks")
    parser.add_argument("--readme", type=Path, metavar="JSON", help="only rewrite README's table from a JSON file")
    args = parser.parse_args(argv)
    if args.readme:
        results = json.loads(args.readme.read_text())
        update_readme(results)
        print(format_report(results))
        return results
    device = get_device(args.device)
    budget, n_eval, iwae_k, feed_steps = (2_000, 200, 10, 20) if args.quick else (60_000, 1000, 1000, 100)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "command": "python -m genvar_helpers.bench" + (" --quick" if args.quick else ""),
        "date": time.strftime("%Y-%m-%d"),
        "machine": platform.node(),
        "environment": environment_report() | {"device": str(device)},
        "data": load_mnist("train").source,
        "budget": budget,
        "n_eval": n_eval,
    }
    results["models"] = bench_models(budget, n_eval, iwae_k, device)
    first = results["models"][0]
    results["protocol"] = (
        f"evaluate_protocol, {first['protocol_draws']} draws of n = {first['protocol_n']} samples against unseen "
        f"{results['data']} test digits (means; FD floor and confident share of real test digits in brackets)"
    )
    results["data_feeding"] = bench_data_feeding(feed_steps, device)
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    results["notebooks_committed_full_s"] = committed_run_times(notebooks)
    if not (args.quick or args.no_notebooks):
        results["notebooks_quick_s"] = bench_notebooks(notebooks)
    elif args.out and args.out.exists() and "notebooks_quick_s" in (previous := json.loads(args.out.read_text())):
        results["notebooks_quick_s"] = previous["notebooks_quick_s"]  # kept from the earlier run, and said so
        results["notebooks_quick_s_measured"] = previous.get("notebooks_quick_s_measured", previous["date"])
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    out = args.out or ROOT / "bench_results" / f"{device.type}{'-quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(format_report(results))
    print(f"\nbench: {results['total_seconds']:.0f} s in all; results in {out}")
    return results


if __name__ == "__main__":
    main()
