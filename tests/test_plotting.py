"""Every plotting helper returns a Figure that shows what it was given; every widget helper returns a widget
that redraws when its slider moves and carries a static picture for viewers without widgets."""

import matplotlib

matplotlib.use("Agg")

import base64

import ipywidgets as widgets
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


# --------------------------------------------------------------------------- widgets

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _line_figure(values):
    fig = Figure(figsize=(2, 2))
    fig.subplots().plot([0, 1], [0, values["slope"]])
    return fig


def test_slider_figure_is_a_widget_that_redraws_when_its_slider_moves():
    slider = widgets.FloatSlider(value=0.0, min=-1.0, max=1.0)
    ui = plotting.SliderFigure({"slope": slider}, _line_figure)
    assert isinstance(ui, widgets.Widget)
    assert ui.children[0].children == (slider,) and ui.children[1] is ui.image
    first = bytes(ui.image.value)  # ipywidgets 8 keeps a memoryview, 7 bytes
    assert first.startswith(PNG_SIGNATURE)
    slider.value = 1.0
    assert bytes(ui.image.value).startswith(PNG_SIGNATURE) and bytes(ui.image.value) != first, "moving redraws"
    slider.value = 0.0
    assert bytes(ui.image.value) == first, "the same slider value draws the same picture"
    with pytest.raises(ValueError, match="at least one slider"):
        plotting.SliderFigure({}, _line_figure)


def test_slider_figure_display_carries_the_widget_and_a_static_png():
    ui = plotting.SliderFigure({"slope": widgets.FloatSlider(value=0.5)}, _line_figure)
    bundle = ui._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == ui.model_id
    assert base64.b64decode(bundle["image/png"]) == bytes(ui.image.value)
    assert "slope" in bundle["text/plain"]


def test_figure_png_closes_pyplot_figures():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    assert plotting.figure_png(fig).startswith(PNG_SIGNATURE)
    assert not plt.fignum_exists(fig.number)


def test_latent_explorer_returns_a_widget_that_redraws():
    from genvar_helpers import vae

    torch.manual_seed(0)
    model = vae.MLPVAE(latent_dim=3, hidden=(16,)).eval()
    ui = vae.latent_explorer(model, torch.zeros(3), dims=[0, 2])
    assert isinstance(ui, widgets.Widget)
    sliders = ui.children[0].children
    assert [s.description for s in sliders] == ["z[0]", "z[2]"]
    first = bytes(ui.image.value)
    sliders[1].value = 3.0
    assert bytes(ui.image.value) != first, "moving a latent slider redraws the digit"
    with pytest.raises(ValueError, match="dims"):
        vae.latent_explorer(model, dims=[3])
    with pytest.raises(ValueError, match="latent_dim = 3"):
        vae.latent_explorer(model, torch.zeros(4))
