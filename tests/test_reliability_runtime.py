"""Environment switches that must not be misread: GENVAR_QUICK spellings, malformed GENVAR_DEVICE strings."""

from __future__ import annotations

import pytest

from genvar_helpers import runtime


@pytest.mark.parametrize(
    ("value", "quick"),
    [(v, False) for v in ("", "0", "false", "no", "off", " False ")]
    + [(v, True) for v in ("1", "true", "yes", "on", "TRUE ")],
)
def test_quick_accepts_the_documented_spellings(monkeypatch, value, quick):
    monkeypatch.setenv(runtime.QUICK_ENV, value)
    assert runtime.is_quick() is quick


@pytest.mark.parametrize("value", ["maybe", "2", "quick", "y"])
def test_quick_rejects_other_values_instead_of_meaning_full_mode(monkeypatch, value):
    monkeypatch.setenv(runtime.QUICK_ENV, value)
    with pytest.raises(ValueError, match=rf"GENVAR_QUICK={value!r} is not understood.*'1'.*'true'.*'0'.*'false'"):
        runtime.is_quick()


@pytest.mark.parametrize("value", ["cpu:abc", "cpu:", "cpu:-1", "cpu:1:2", "cpu: 0x"])
def test_malformed_device_string_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv(runtime.DEVICE_ENV, value)
    with pytest.raises(ValueError, match=rf"malformed device {value!r}.*'cuda:1'.*GENVAR_DEVICE"):
        runtime.get_device()
