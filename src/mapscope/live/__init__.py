"""The live app: draw a digit and watch a model's every layer, prediction and attribution
answer as you draw. ``LiveModel`` computes (it works in a notebook without a server),
``create_app`` is the ASGI app over it, ``LiveServer`` serves it with uvicorn, and ``start``
does all three for an ``Inspection``::

    server = Run.open("runs/demo/cnn").live()    # or Inspection.from_module(net).live()
    server            # in Jupyter: the app inline
    server.stop()
"""

from __future__ import annotations

import json
from pathlib import Path

from mapscope.inspect.inspection import Inspection
from mapscope.live.app import create_app
from mapscope.live.model import LiveModel
from mapscope.live.server import DEFAULT_PORT, LOCAL, LiveServer, bind

__all__ = ["LiveModel", "LiveServer", "atlas_beside", "create_app", "serve", "start"]


def atlas_beside(run_dir: str | Path) -> Path | None:
    """An atlas of this run: a folder inside it or next to it whose ``atlas.json`` names it."""
    run_dir = Path(run_dir).resolve()
    for candidate in sorted({*run_dir.glob("*/atlas.json"), *run_dir.parent.glob("*/atlas.json")}):
        try:
            model = json.loads(candidate.read_text()).get("model")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(model, str) and Path(model).resolve() == run_dir:
            return candidate.parent
    return None


def serve(
    inspection: Inspection,
    port: int = DEFAULT_PORT,
    atlas: str | Path | None = None,
    host: str = LOCAL,
    allowed_hosts: list[str] | None = None,
    **model_options,
) -> LiveServer:
    """A ``LiveServer`` for ``inspection``, bound but not yet serving. The port is taken
    first, so that a port in use is refused before any work."""
    sock = bind(host, port)
    try:
        model = LiveModel(inspection, **model_options)
        hosts = allowed_hosts or (["127.0.0.1", "localhost"] if host == LOCAL else ["*"])
        app = create_app(model, Path(atlas) if atlas else None, hosts)
    except BaseException:
        sock.close()
        raise
    model.build_index_in_background()  # ready for the first pause; drawings answered meanwhile
    return LiveServer(app, host, port, sock)


def start(inspection: Inspection, port: int = 0, atlas: str | Path | None = None, **options):
    """Serve ``inspection`` from a background thread on 127.0.0.1 (any free port by default)
    and return the running ``LiveServer``."""
    server = serve(inspection, port, atlas, **options)
    return server.start()
