"""Unit tests for genvar_helpers.gan2d (notebook 03): shapes, packing, a short training run, NaN guard, slider."""

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import torch

from genvar_helpers.data import ring_of_gaussians
from genvar_helpers.gan2d import (
    Discriminator2D,
    Generator2D,
    draw_snapshot,
    pack_samples,
    r1_penalty,
    snapshot_grid,
    train_gan_2d,
)


def test_generator_shapes_and_config():
    G = Generator2D(latent_dim=3, hidden=16, depth=2)
    assert G(torch.randn(5, 3)).shape == (5, 2)
    x = G.sample(7)
    assert x.shape == (7, 2) and x.device == next(G.parameters()).device
    assert G.config == {"latent_dim": 3, "hidden": 16, "depth": 2}
    assert Generator2D(**G.config).config == G.config
    # a fixed torch.Generator gives the same samples twice
    a, b = G.sample(4, torch.Generator().manual_seed(1)), G.sample(4, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def test_pack_samples_groups_consecutive_points():
    x = torch.arange(12.0).reshape(6, 2)
    packed = pack_samples(x, 3)
    assert packed.shape == (2, 6)
    assert torch.equal(packed[0], torch.tensor([0.0, 1, 2, 3, 4, 5]))  # samples 0, 1, 2 side by side
    assert torch.equal(packed[1], x[3:].flatten())
    assert torch.equal(pack_samples(x, 1), x)


def test_pack_error_names_the_fix():
    with pytest.raises(ValueError, match="divisible by pack=4"):
        pack_samples(torch.zeros(6, 2), 4)
    with pytest.raises(ValueError, match="divisible"):
        Discriminator2D(hidden=8, depth=1, pack=4)(torch.zeros(10, 2))
    with pytest.raises(ValueError, match="pack must be"):
        Discriminator2D(pack=0)


@pytest.mark.parametrize("pack,minibatch_std", [(1, False), (2, False), (4, True)])
def test_discriminator_one_logit_per_pack(pack, minibatch_std):
    D = Discriminator2D(hidden=16, depth=2, pack=pack, minibatch_std=minibatch_std)
    assert D(torch.randn(8, 2)).shape == (8 // pack,)
    assert D.net[0].in_features == 2 * pack + int(minibatch_std)


def test_packed_discriminator_sees_all_points_of_a_pack():
    torch.manual_seed(0)
    D = Discriminator2D(hidden=16, depth=2, pack=2)
    x = torch.randn(4, 2)
    y = x.clone()
    y[1] += 1.0  # change only the second point of the first pack
    out_x, out_y = D(x), D(y)
    assert not torch.allclose(out_x[0], out_y[0]) and torch.equal(out_x[1], out_y[1])


def test_short_training_run_is_finite_and_snapshots():
    torch.manual_seed(0)
    data = ring_of_gaussians(512, seed=0)
    G, D = Generator2D(hidden=16, depth=2), Discriminator2D(hidden=16, depth=2, pack=2)
    run = train_gan_2d(
        G,
        D,
        data.samples,
        steps=20,
        batch_size=32,
        snapshot_steps=[0, 10, 20],
        n_snapshot=50,
        lr_end=1e-4,
        progress=False,
    )
    assert set(run.history) == {"loss_d", "loss_g", "d_real", "d_fake"}
    assert all(len(v) == 20 and all(math.isfinite(x) for x in v) for v in run.history.values())
    assert sorted(run.snapshots) == [0, 10, 20]
    assert all(s.shape == (50, 2) for s in run.snapshots.values())
    assert not torch.equal(run.snapshots[0], run.snapshots[20]), "training changed the generator"


def test_r1_penalty_of_a_linear_discriminator_is_its_squared_weight_norm():
    D = Discriminator2D(hidden=8, depth=0)  # a single linear layer: grad_x D(x) = w everywhere
    x = torch.randn(10, 2, requires_grad=True)
    expected = D.net[0].weight.pow(2).sum()
    assert torch.allclose(r1_penalty(D(x), x), expected)
    packed = Discriminator2D(hidden=8, depth=0, pack=2)  # one decision per pack of 2: its gradient spans 4 inputs
    assert torch.allclose(r1_penalty(packed(x), x), packed.net[0].weight.pow(2).sum())
    with torch.no_grad():
        D.net[0].weight.zero_()
    assert r1_penalty(D(x), x).item() == 0.0, "a flat discriminator has zero penalty"
    # the penalty is differentiable in D's weights (create_graph): its gradient is 2 w
    D2 = Discriminator2D(hidden=8, depth=0)
    r1_penalty(D2(x), x).backward()
    assert torch.allclose(D2.net[0].weight.grad, 2 * D2.net[0].weight)


def test_r1_weight_changes_training_and_is_logged():
    data = ring_of_gaussians(256, seed=0)
    runs = {}
    for gamma in (0.0, 10.0):
        torch.manual_seed(0)
        G, D = Generator2D(hidden=8, depth=1), Discriminator2D(hidden=8, depth=1)
        runs[gamma] = train_gan_2d(
            G, D, data.samples, steps=5, batch_size=16, snapshot_steps=[5], r1_weight=gamma, progress=False
        )
    assert "r1" not in runs[0.0].history
    assert len(runs[10.0].history["r1"]) == 5 and all(v >= 0 and math.isfinite(v) for v in runs[10.0].history["r1"])
    assert runs[0.0].history["loss_d"][0] < runs[10.0].history["loss_d"][0], "the penalty is added to D's loss"
    assert not torch.equal(runs[0.0].snapshots[5], runs[10.0].snapshots[5]), "the penalty changes training"
    with pytest.raises(ValueError, match="r1_weight"):
        train_gan_2d(G, D, data.samples, steps=1, batch_size=16, r1_weight=-1.0, progress=False)


def test_training_is_seeded():
    data = ring_of_gaussians(256, seed=0)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        G, D = Generator2D(hidden=8, depth=1), Discriminator2D(hidden=8, depth=1)
        runs.append(
            train_gan_2d(G, D, data.samples, steps=5, batch_size=16, snapshot_steps=[5], seed=3, progress=False)
        )
    assert runs[0].history == runs[1].history


def test_nan_guard_names_the_step():
    data = ring_of_gaussians(64, seed=0)
    data.samples[:] = float("nan")
    G, D = Generator2D(hidden=8, depth=1), Discriminator2D(hidden=8, depth=1)
    with pytest.raises(FloatingPointError, match="at step 1"):
        train_gan_2d(G, D, data.samples, steps=3, batch_size=8, progress=False)


def test_slider_callback_and_grid_draw_headlessly():
    data = ring_of_gaussians(100, seed=0)
    snapshots = {0: torch.zeros(30, 2), 50: torch.randn(30, 2), 100: torch.randn(30, 2)}
    fig = draw_snapshot(snapshots, 1, data.samples, data.centres)
    ax = fig.axes[0]
    assert ax.get_title() == "step 50"
    assert len(ax.collections) == 3  # real, generated, centres
    assert ax.collections[1].get_offsets().shape == (30, 2)
    with pytest.raises(IndexError, match="3 snapshots"):
        draw_snapshot(snapshots, 3, data.samples, data.centres)
    grid = snapshot_grid(snapshots, data.samples, data.centres, ncols=2)
    assert [a.get_title() for a in grid.axes if a.axison] == ["step 0", "step 50", "step 100"]
    plt.close("all")


def test_snapshot_slider_returns_a_widget_that_redraws():
    import ipywidgets as widgets

    from genvar_helpers.gan2d import snapshot_slider

    data = ring_of_gaussians(50, seed=0)
    ui = snapshot_slider({0: torch.zeros(5, 2), 10: torch.ones(5, 2) * 3}, data.samples, data.centres)
    assert isinstance(ui, widgets.Widget)
    (slider,) = ui.children[0].children
    assert (slider.min, slider.max, slider.value) == (0, 1, 1), "the slider starts at the last snapshot"
    last = bytes(ui.image.value)
    slider.value = 0
    assert bytes(ui.image.value) != last, "moving the slider redraws the figure"
    with pytest.raises(ValueError, match="no snapshots"):
        snapshot_slider({}, data.samples, data.centres)
    plt.close("all")
