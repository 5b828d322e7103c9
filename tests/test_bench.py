"""The benchmark's pieces: a tiny training budget, the data-feeding comparison, the report and README rewrite."""

import ast

import pytest
import torch

from genvar_helpers import bench

RESULTS = {
    "command": "python -m genvar_helpers.bench --quick",
    "date": "2026-01-01",
    "environment": {"device": "cpu", "cpu_threads": 2, "torch": "2.13.0"},
    "data": "bundled",
    "budget": 3000,
    "n_eval": 250,
    "protocol": "evaluate_protocol, 3 draws of n = 250 samples against unseen bundled test digits",
    "models": [
        {
            "model": "vae_mlp",
            "train_images_per_s": 1234.5,
            "train_seconds": 3.0,
            "classes_present": 10,
            "kl_from_uniform": 0.01,
            "fd": 5.0,
            "fd_real_floor": 1.0,
            "precision": 0.5,
            "recall": 0.9,
            "confident_share": 0.8,
            "real_confident_share": 0.98,
            "test_nll_nats": 99.5,
            "iwae_k": 10,
        }
    ],
    "data_feeding": {"steps": 20, "dataloader_images_per_s": 100.0, "on_device_images_per_s": 150.0, "speedup": 1.5},
    "notebooks_quick_s": {"00_setup_and_tour.ipynb": 12.3},
    "notebooks_committed_full_s": {"00_setup_and_tour.ipynb": 20.0, "01_gan_value_function.ipynb": None},
}


def test_train_for_budget_trains_each_family():
    images = torch.rand(256, 1, 28, 28)
    for name in ("gan_mlp", "vae_mlp"):
        model, seconds, speed = bench.train_for_budget(name, 256, images, torch.device("cpu"))
        assert seconds > 0 and speed > 0
        assert model.sample(3).shape == (3, 1, 28, 28)
    with pytest.raises(ValueError, match="unknown model 'vae'"):
        bench.train_for_budget("vae", 256, images, torch.device("cpu"))


def test_report_holds_every_figure():
    report = bench.format_report(RESULTS)
    for text in (
        "| vae_mlp | 1234 | 3 | 10/10 | 0.010 | 5.00 (1.00) | 0.50 | 0.90 | 0.80 (0.98) | 99.5 (k=10) |",
        "protocol: evaluate_protocol, 3 draws of n = 250 samples against unseen bundled test digits.",
        "ratio 1.50x",
        "| 00_setup_and_tour.ipynb | 12 | 20 |",
        "| 01_gan_value_function.ipynb | — | — |",
        "python -m genvar_helpers.bench --quick",
        "bundled MNIST",
    ):
        assert text in report


def test_update_readme_replaces_only_between_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{bench.README_START}\nold table\n{bench.README_END}\noutro\n")
    bench.update_readme(RESULTS, readme)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old table" not in text
    assert "| vae_mlp |" in text
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        bench.update_readme(RESULTS, readme)


def test_committed_run_times_read_cell_timestamps(tmp_path):
    import nbformat

    notebook = nbformat.v4.new_notebook()
    for start, end in (
        ("2026-01-01T00:00:00Z", "2026-01-01T00:00:05Z"),
        ("2026-01-01T00:00:06Z", "2026-01-01T00:01:10Z"),
    ):
        cell = nbformat.v4.new_code_cell("1")
        cell.metadata["execution"] = {"iopub.execute_input": start, "shell.execute_reply": end}
        notebook.cells.append(cell)
    timed, untimed = tmp_path / "10_a.ipynb", tmp_path / "11_b.ipynb"
    nbformat.write(notebook, timed)
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")]), untimed)
    assert bench.committed_run_times([timed, untimed]) == {"10_a.ipynb": 70.0, "11_b.ipynb": None}


def _training_cell_calls(path, loops=(".train_gan(", ".train_gan_basic("), marker="snapshot_every"):
    """Keyword arguments of each `<module>.<name>(...)` call in the notebook cell that calls one of `loops` and
    holds `marker` (by default: the GAN cell that trains with snapshots)."""
    import nbformat

    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "code" and any(loop in cell.source for loop in loops) and marker in cell.source:
            code = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
            return {
                node.func.attr: {k.arg: k.value for k in node.keywords}
                for node in ast.walk(ast.parse(code))
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            }
    raise AssertionError(f"{path.name} has no training cell")


@pytest.mark.parametrize(
    ("notebook", "loop", "discriminator", "discriminator_options", "training_options"),
    [
        (
            "04_gan_mnist_mlp.ipynb",
            bench.GAN_MLP_LOOP,
            "MLPDiscriminator",
            bench.GAN_MLP_DISCRIMINATOR,
            bench.GAN_MLP_TRAINING,
        ),
        ("05_dcgan.ipynb", bench.DCGAN_LOOP, "DCGANDiscriminator", bench.DCGAN_DISCRIMINATOR, bench.DCGAN_TRAINING),
    ],
)
def test_benchmark_trains_the_notebooks_gan_recipes(
    notebook, loop, discriminator, discriminator_options, training_options
):
    """The benchmark's GAN recipes copy the notebooks' training cells, loop included; this keeps each pair equal."""
    calls = _training_cell_calls(bench.ROOT / "notebooks" / notebook)
    loops = {"train_gan", "train_gan_basic"} & set(calls)
    assert loops == {loop}, f"{notebook} trains with {sorted(loops)}; the benchmark with {loop}"
    not_recipe = {"steps", "ema_decay", "snapshot_every", "fixed_z", "amp", "compile", "seed", "progress"}
    training = {k: ast.literal_eval(v) for k, v in calls[loop].items() if k not in not_recipe}
    assert training == training_options, f"{notebook} trains with {training}"
    built = {k: ast.literal_eval(v) for k, v in calls[discriminator].items()}
    assert built == discriminator_options, f"{notebook} builds {discriminator}({built})"


def test_benchmark_trains_notebook_10s_cluster_gan_recipe():
    """The benchmark's cluster GAN copies notebook 10's training cell: clusters, discriminator, loop and options."""
    path = bench.ROOT / "notebooks" / "10_hybrids.ipynb"
    text = path.read_text()
    assert f"N_CLUSTERS = {bench.CLUSTER_GAN_CLUSTERS}\\n" in text
    assert f'coder = load_trained(\\"{bench.CLUSTER_GAN_CODER}\\"' in text, "the same VAE's codes are clustered"
    calls = _training_cell_calls(path, loops=(".train_cgan(",), marker="ClusterConditionalGenerator")
    not_recipe = {"steps", "ema_decay", "progress", "seed"}
    training = {k: ast.literal_eval(v) for k, v in calls["train_cgan"].items() if k not in not_recipe}
    assert training == bench.CLUSTER_GAN_TRAINING, f"notebook 10 trains with {training}"
    built = {k: ast.literal_eval(v) for k, v in calls["ProjectionDiscriminator"].items() if k != "n_classes"}
    assert built == bench.CLUSTER_GAN_DISCRIMINATOR, f"notebook 10 builds ProjectionDiscriminator({built})"


def test_cluster_gan_trains_for_a_budget():
    images = torch.rand(128, 1, 28, 28)
    model, seconds, speed = bench.train_for_budget("cluster_gan", 128, images, torch.device("cpu"))
    assert seconds > 0 and speed > 0 and model.sample(3).shape == (3, 1, 28, 28)
    assert model.cluster_shares.sum().item() == pytest.approx(1.0, abs=1e-5)
