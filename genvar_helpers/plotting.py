"""Plots every notebook shares. Each function returns its matplotlib Figure (so tests can check it);
`SliderFigure` turns a figure-drawing function into a widget whose sliders redraw it."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

ArrayLike = torch.Tensor | np.ndarray


def _numpy(x: ArrayLike) -> np.ndarray:
    return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)


def to_unit_range(images: ArrayLike) -> np.ndarray:
    """Images in [-1, 1] (tanh outputs) or [0, 1] as a numpy array in [0, 1]."""
    array = _numpy(images)
    if array.min() < -1e-3:  # a tanh batch: map [-1, 1] to [0, 1]
        array = (array + 1) / 2
    return np.clip(array, 0, 1)


def make_grid(images: ArrayLike, nrow: int = 8, padding: int = 2) -> np.ndarray:
    """Tile a batch (n, c, h, w) or (n, h, w) into one (H, W) or (H, W, c) array in [0, 1]."""
    array = to_unit_range(images)
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4:
        raise ValueError(f"expected images of shape (n, c, h, w) or (n, h, w); got {array.shape}")
    n, c, h, w = array.shape
    ncol = min(nrow, n)
    rows = int(np.ceil(n / ncol))
    grid = np.ones((c, rows * (h + padding) + padding, ncol * (w + padding) + padding), dtype=np.float32)
    for i in range(n):
        r, k = divmod(i, ncol)
        top, left = padding + r * (h + padding), padding + k * (w + padding)
        grid[:, top : top + h, left : left + w] = array[i]
    return grid[0] if c == 1 else grid.transpose(1, 2, 0)


def image_grid(images: ArrayLike, nrow: int = 8, title: str | None = None, scale: float = 0.45) -> Figure:
    """Show a batch of images in [-1, 1] or [0, 1] as one grid (white strokes on black)."""
    grid = make_grid(images, nrow=nrow)
    fig, ax = plt.subplots(figsize=(max(2.0, grid.shape[1] / 28 * scale * 2), max(2.0, grid.shape[0] / 28 * scale * 2)))
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_history(
    history: Mapping[str, Sequence[float]], title: str | None = None, xlabel: str = "step", logy: bool = False
) -> Figure:
    """Training curves, one line per key of `history` (e.g. {"loss_D": [...], "loss_G": [...]})."""
    if not history:
        raise ValueError("history is empty: nothing to plot")
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for name, values in history.items():
        ax.plot(np.arange(1, len(values) + 1), list(values), label=name)
    ax.set_xlabel(xlabel)
    if logy:
        ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_2d_samples(
    real: ArrayLike,
    fake: ArrayLike | None = None,
    centres: ArrayLike | None = None,
    title: str | None = None,
    ax: plt.Axes | None = None,
) -> Figure:
    """Real vs generated 2D samples, with the mixture's mode centres marked."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
    else:
        fig = ax.figure
    real_np = _numpy(real)
    ax.scatter(real_np[:, 0], real_np[:, 1], s=4, alpha=0.35, color="tab:blue", label="real")
    if fake is not None:
        fake_np = _numpy(fake)
        ax.scatter(fake_np[:, 0], fake_np[:, 1], s=4, alpha=0.35, color="tab:orange", label="generated")
    if centres is not None:
        c = _numpy(centres)
        ax.scatter(c[:, 0], c[:, 1], marker="x", s=40, color="black", label="mode centres")
    ax.set_aspect("equal")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=3, fontsize=8, markerscale=2, frameon=False)
    if title:
        ax.set_title(title)
    return fig


def plot_latent_scatter(z: ArrayLike, labels: ArrayLike, title: str | None = None) -> Figure:
    """2D latent codes (first two dimensions) coloured by digit label."""
    z_np, labels_np = _numpy(z), _numpy(labels).astype(int)
    if z_np.ndim != 2 or z_np.shape[1] < 2:
        raise ValueError(f"expected latent codes of shape (n, >=2); got {z_np.shape}")
    fig, ax = plt.subplots(figsize=(5.5, 5))
    points = ax.scatter(z_np[:, 0], z_np[:, 1], c=labels_np, cmap="tab10", s=5, alpha=0.7, vmin=-0.5, vmax=9.5)
    fig.colorbar(points, ax=ax, ticks=range(10), label="digit")
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- widgets


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes; a pyplot figure is closed, so the notebook does not also show it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


class SliderFigure(widgets.Box):
    """Sliders and the figure they control: `draw({key: slider.value})` returns a Figure, redrawn on every move.

    The figure is shown as an ipywidgets Image, which works alike in JupyterLab, Notebook 7, VS Code and
    Colab (ipywidgets 7 or 8). The widget's display data also carries a PNG of the current figure, so a
    viewer without live widgets (GitHub, nbconvert, nbval, a notebook reopened without its kernel) shows
    that figure instead of an empty cell.
    """

    def __init__(
        self, sliders: Mapping[Any, widgets.Widget], draw: Callable[[dict[Any, Any]], Figure], row: bool = False
    ) -> None:
        if not sliders:
            raise ValueError("SliderFigure needs at least one slider")
        super().__init__(layout=widgets.Layout(flex_flow="row" if row else "column", align_items="center"))
        self.sliders, self.draw, self.image = dict(sliders), draw, widgets.Image(format="png")
        self.children = [widgets.VBox(list(self.sliders.values())), self.image]
        self.add_class("genvar-slider-figure")  # a handle for the browser test
        for slider in self.sliders.values():
            slider.observe(self.redraw, names="value")
        self.redraw()

    def redraw(self, change: Any = None) -> None:
        """Draw the figure for the sliders' current values into the image."""
        self.image.value = figure_png(self.draw({key: slider.value for key, slider in self.sliders.items()}))

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        view = {"version_major": 2, "version_minor": 0, "model_id": self.model_id}
        return {
            "application/vnd.jupyter.widget-view+json": view,
            "image/png": base64.b64encode(self.image.value).decode("ascii"),
            "text/plain": f"{type(self).__name__} with sliders {list(self.sliders)} (run the notebook to move them)",
        }

    def _ipython_display_(self, **kwargs: Any) -> None:  # ipywidgets 7 displays widgets through this hook
        from IPython.display import display

        display(self._repr_mimebundle_(), raw=True)
