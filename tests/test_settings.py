"""Settings: environment overrides and errors that name the variable to fix."""

from __future__ import annotations

import pytest

from app.settings import SettingsError, load_settings


def test_environment_overrides_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("KB_CHUNK_TOKENS", "128")
    monkeypatch.setenv("KB_COLLECTION", "legal")
    monkeypatch.setenv("KB_HOME", str(tmp_path))
    settings = load_settings()
    assert settings.chunk_tokens == 128
    assert settings.collection_dir == tmp_path / "collections" / "legal"
    assert settings.ui_host == "127.0.0.1"  # localhost unless configured


def test_inconsistent_values_name_the_variables(monkeypatch):
    monkeypatch.setenv("KB_CHUNK_OVERLAP", "900")
    with pytest.raises(SettingsError, match="KB_CHUNK_OVERLAP.*KB_CHUNK_TOKENS"):
        load_settings()


@pytest.mark.parametrize("variable, value", [("KB_FIRST_STAGE_K", "many"), ("KB_COLLECTION", "../etc"),
                                             ("KB_TEMPERATURE", "-1")])
def test_bad_values_are_reported_by_variable_name(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        load_settings()
