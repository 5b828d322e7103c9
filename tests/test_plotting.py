"""Every plotting helper returns a Figure that shows what it was given."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from genvar_helpers import plotting


def test_grid_maps_both_ranges_to_the_same_picture():
    images = torch.rand(10, 1, 28, 28)
    unit = plotting.make_grid(images, nrow=5)
    tanh = plotting.make_grid(images * 2 - 1, nrow=5)
    assert unit.shape == (2 * 30 + 2, 5 * 30 + 2)
    assert np.allclose(unit, tanh, atol=1e-6)
    assert np.allclose(unit[2:30, 2:30], images[0, 0].numpy())


def test_grid_rejects_wrong_shape():
    with pytest.raises(ValueError, match="expected images of shape"):
        plotting.make_grid(torch.rand(28, 28))


def test_image_grid_returns_figure_with_image():
    fig = plotting.image_grid(torch.rand(16, 1, 28, 28), nrow=4, title="samples")
    assert isinstance(fig, Figure) and fig.axes[0].get_title() == "samples"
    assert len(fig.axes[0].images) == 1


def test_plot_history_one_line_per_key():
    fig = plotting.plot_history({"loss_D": [1.0, 0.8, 0.7], "loss_G": [2.0, 1.5, 1.4]}, logy=True)
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["loss_D", "loss_G"]
    assert list(lines[1].get_ydata()) == [2.0, 1.5, 1.4]
    with pytest.raises(ValueError, match="empty"):
        plotting.plot_history({})


def test_plot_2d_samples_draws_real_fake_and_centres():
    fig = plotting.plot_2d_samples(torch.randn(100, 2), torch.randn(50, 2), torch.zeros(8, 2), title="ring")
    sizes = [len(c.get_offsets()) for c in fig.axes[0].collections]
    assert sizes == [100, 50, 8]


def test_latent_scatter_colours_by_label():
    labels = torch.arange(10).repeat(5)
    fig = plotting.plot_latent_scatter(torch.randn(50, 2), labels)
    assert np.array_equal(fig.axes[0].collections[0].get_array(), labels.numpy())
    with pytest.raises(ValueError, match="latent codes"):
        plotting.plot_latent_scatter(torch.randn(50), labels)
