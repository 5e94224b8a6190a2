"""`mapscope live`: a local web app where you draw and watch the model answer."""

from __future__ import annotations

import contextlib
from pathlib import Path

import typer

from mapscope.cli.common import NetworkChoice, network_options


@network_options()
def live(
    atlas: Path = typer.Option(
        None, help="Atlas folder of this model (default: an atlas beside the --model run)."
    ),
    port: int = typer.Option(8765, help="Port to serve on (0: any free port)."),
    host: str = typer.Option(
        "127.0.0.1", help="Address to listen on; another than 127.0.0.1 needs --allow-remote."
    ),
    allow_remote: bool = typer.Option(
        False, help="Let other machines reach the app (with --host 0.0.0.0 or an address)."
    ),
    open_browser: bool = typer.Option(False, "--open", help="Open the app in a web browser."),
    alike_images: int = typer.Option(
        None, help="Training images searched for alike images (default: all)."
    ),
    network: NetworkChoice = None,
) -> None:
    """Draw a digit and watch every layer, the prediction and its attribution answer live."""
    from mapscope.errors import ConfigError
    from mapscope.live import LOCAL, atlas_beside, serve

    if host not in (LOCAL, "localhost") and not allow_remote:
        raise ConfigError(
            f"--host {host} would let other machines draw on this model and read its test "
            "images; add --allow-remote if that is meant, or leave --host at 127.0.0.1."
        )
    if alike_images is not None and alike_images < 1:
        raise ConfigError(f"--alike-images must be >= 1, got {alike_images}.")
    if atlas is not None and not (atlas / "atlas.json").is_file():
        raise ConfigError(
            f"{atlas} is not an atlas (no atlas.json); pass the --out of mapscope atlas."
        )
    inspection = network.inspection()
    if atlas is None and network.model is not None:
        atlas = atlas_beside(network.model)
    server = serve(inspection, port, atlas, host, alike_images=alike_images)
    if host not in (LOCAL, "localhost"):
        typer.echo(
            f"warning: listening on {host}: anyone who reaches this machine on port "
            f"{server.port} can draw on {inspection.source}, see its layers and OIPs, and read "
            f"the {inspection.bundle.dataset.name} images.",
            err=True,
        )
    typer.echo(f"mapscope live: {inspection.source} at {server.url}")
    if atlas is not None:
        typer.echo(f"unit pages from the atlas in {atlas}")
    typer.echo("press Ctrl-C to stop")
    if open_browser:
        import webbrowser

        webbrowser.open(server.url)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: uvicorn has already stopped
        server.serve()
    server.stop()
    typer.echo("stopped.")
