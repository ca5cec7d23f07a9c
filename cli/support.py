"""What every ``kb`` command module shares: settings and a pipeline, or a clean exit with the reason.

Deliberately not here: any command.
"""

from __future__ import annotations

import typer

from app.pipeline import Pipeline
from app.settings import Settings, SettingsError, load_settings
from retrieval.embedders import EmbedderError
from retrieval.rerank import RerankerError


def settings_or_exit(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


def pipeline_or_exit(settings: Settings) -> Pipeline:
    try:
        return Pipeline.from_settings(settings)
    except (EmbedderError, RerankerError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
