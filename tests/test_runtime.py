"""Device choice, seeding, the quick/full switch and the NaN guard."""

import random

import numpy as np
import pytest
import torch

from genvar_helpers import runtime


def test_default_device_is_the_first_available(monkeypatch):
    monkeypatch.delenv(runtime.DEVICE_ENV, raising=False)
    assert runtime.get_device().type == runtime.available_devices()[0]
    assert runtime.available_devices()[-1] == "cpu"


def test_argument_and_env_override(monkeypatch):
    monkeypatch.setenv(runtime.DEVICE_ENV, "cpu")
    assert runtime.get_device() == torch.device("cpu")
    assert runtime.get_device("CPU") == torch.device("cpu")


@pytest.mark.parametrize("name", ["tpu", "gpu", "cuda0"])
def test_unknown_device_lists_choices(name):
    with pytest.raises(ValueError, match=r"unknown device .*cuda.*mps.*cpu.*available here"):
        runtime.get_device(name)


def test_unavailable_device_lists_what_is_available(monkeypatch):
    monkeypatch.setattr(runtime, "available_devices", lambda: ["cpu"])
    with pytest.raises(ValueError, match=r"'cuda' is not available.*available: \['cpu'\]"):
        runtime.get_device("cuda")
    monkeypatch.setenv(runtime.DEVICE_ENV, "mps")
    with pytest.raises(ValueError, match="GENVAR_DEVICE"):
        runtime.get_device()


def test_seed_everything_repeats_all_generators():
    def draw():
        return random.random(), float(np.random.rand()), float(torch.rand(1))

    runtime.seed_everything(7)
    first = draw()
    runtime.seed_everything(7)
    assert draw() == first
    runtime.seed_everything(8)
    assert draw() != first


@pytest.mark.parametrize(("value", "quick"), [("1", True), ("true", True), ("0", False), ("", False)])
def test_quick_switch_and_pick(monkeypatch, value, quick):
    monkeypatch.setenv(runtime.QUICK_ENV, value)
    assert runtime.is_quick() is quick
    assert runtime.pick("small", "big") == ("small" if quick else "big")


def test_pretrained_switch(monkeypatch):
    monkeypatch.setenv(runtime.PRETRAINED_ENV, "1")
    assert runtime.use_pretrained()
    monkeypatch.delenv(runtime.PRETRAINED_ENV)
    assert not runtime.use_pretrained()


def test_check_finite_names_the_step():
    runtime.check_finite(torch.tensor(1.5), step=3)
    with pytest.raises(FloatingPointError, match=r"loss_D became nan at step 12.*learning rate"):
        runtime.check_finite(torch.tensor(float("nan")), step=12, what="loss_D")
    with pytest.raises(FloatingPointError, match="inf"):
        runtime.check_finite(torch.tensor(float("inf")), step=0)


def test_environment_report_and_show_source():
    report = runtime.environment_report()
    assert report["torch"] == torch.__version__ and report["device"] in {"cpu", "cuda", "mps"} | {"cuda:0"}
    shown = runtime.show_source(runtime.pick)
    assert "def pick" in getattr(shown, "data", shown)
