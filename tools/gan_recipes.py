"""Screen DCGAN recipes on one budget: how notebook 05's recipe was chosen.

Each recipe trains notebook 05's DCGAN generator on the bundled training digits for the same number of steps
(seed 0) and is scored by the series' protocol on unseen test digits (`evaluate_protocol`). Example:

    python tools/gan_recipes.py --steps 3000 baseline r1 r1_aug
    python tools/gan_recipes.py --list

Prints one line per recipe and appends it, as JSON, to `--out` (default: gan_recipes.jsonl).
"""

from __future__ import annotations

import argparse
import functools
import json
import time

import torch

from genvar_helpers import gan
from genvar_helpers.data import TensorBatches, load_mnist
from genvar_helpers.metrics import evaluate_protocol, load_classifier
from genvar_helpers.runtime import seed_everything

TRANSLATE = functools.partial(gan.diff_augment, translation=0.125, cutout=0.0)

# name: (generator kwargs, discriminator kwargs, train_gan kwargs)
RECIPES: dict[str, tuple[dict, dict, dict]] = {
    "baseline": ({}, {"minibatch_std": True, "spectral_norm": True}, {"lr": 2e-4, "lr_d": 4e-4}),
    "r1": ({}, {"minibatch_std": True}, {"lr": 2e-4, "betas": (0.5, 0.99), "r1_weight": 1.0}),
    "r1_aug": (
        {},
        {"minibatch_std": True},
        {"lr": 2e-4, "betas": (0.5, 0.99), "r1_weight": 1.0, "augment": TRANSLATE},
    ),
    "sn_aug": ({}, {"minibatch_std": True, "spectral_norm": True}, {"lr": 2e-4, "lr_d": 4e-4, "augment": TRANSLATE}),
    "r1_wide": ({"ngf": 64}, {"ndf": 64, "minibatch_std": True}, {"lr": 2e-4, "betas": (0.5, 0.99), "r1_weight": 1.0}),
    "r1_g10": ({}, {"minibatch_std": True}, {"lr": 2e-4, "betas": (0.5, 0.99), "r1_weight": 10.0}),
}


def run(name: str, steps: int, ema_decay: float, n: int, draws: int) -> dict:
    """Train recipe `name` for `steps` steps from seed 0 and score its EMA generator."""
    g_kwargs, d_kwargs, t_kwargs = RECIPES[name]
    seed_everything(0)
    G = gan.DCGANGenerator(latent_dim=64, **({"ngf": 32} | g_kwargs))
    D = gan.DCGANDiscriminator(**({"ndf": 32} | d_kwargs))
    train = load_mnist("train", source="bundled")
    batches = TensorBatches(train.images, batch_size=64, seed=0)
    start = time.perf_counter()
    result = gan.train_gan(G, D, batches, steps=steps, ema_decay=ema_decay, seed=0, progress=False, **t_kwargs)
    seconds = time.perf_counter() - start
    scores = evaluate_protocol(
        result.generator_ema.sample, n=n, draws=draws, source="bundled", classifier=load_classifier()
    )
    row = {"recipe": name, "steps": steps, "seconds": round(seconds, 1), "threads": torch.get_num_threads()}
    for measure in ("fd_ratio", "confident_share", "real_confident_share", "kl_from_uniform", "precision", "recall"):
        row[measure] = round(scores[measure]["mean"], 4)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipes", nargs="*", default=list(RECIPES))
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--n", type=int, default=250)
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--out", default="gan_recipes.jsonl")
    parser.add_argument("--list", action="store_true", help="print the recipes and stop")
    args = parser.parse_args()
    if args.list:
        for name, spec in RECIPES.items():
            print(name, spec)
        return
    unknown = sorted(set(args.recipes) - set(RECIPES))
    if unknown:
        parser.error(f"unknown recipe(s) {unknown}; choose from {sorted(RECIPES)}")
    for name in args.recipes:
        row = run(name, args.steps, args.ema, args.n, args.draws)
        print(json.dumps(row), flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
