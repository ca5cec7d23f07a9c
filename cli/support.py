"""What every ``kb`` command module shares: settings and a pipeline, or a clean exit with the reason.

Deliberately not here: any command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from app.settings import Settings, SettingsError, load_settings
from retrieval.embedders import EmbedderError
from retrieval.rerank import RerankerError

if TYPE_CHECKING:  # imported when a command first needs a pipeline: `kb users` and `kb keys` never do
    from app.pipeline import Pipeline


def settings_or_exit(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


def pipeline_or_exit(settings: Settings) -> Pipeline:
    from app.pipeline import Pipeline

    try:
        return Pipeline.from_settings(settings)
    except (EmbedderError, RerankerError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
