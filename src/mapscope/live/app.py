"""The live app as an ASGI application (Starlette): pages, a small JSON API and one WebSocket.

Nothing from the browser names a file: images are addressed by part and index, units by a
layer name checked against the model's layers and an index checked against the layer's size,
atlas pages by a list of the atlas's own files made at start. Every bad request gets one error
message naming what was wrong; the server and the connection go on.

Each WebSocket keeps only the latest frame of each kind while the model is busy ("latest
wins"): a slow machine shows fewer updates, never a growing lag.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import struct
import time
from functools import partial
from importlib.resources import files
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from anyio import CapacityLimiter
from anyio.to_thread import run_sync
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from mapscope.atlas import pictures
from mapscope.cnn.predict import read_drawing
from mapscope.errors import MapscopeError
from mapscope.live import protocol
from mapscope.live.model import LIVE_METHODS, LiveModel
from mapscope.live.protocol import DECODE, DRAW, EXPLAIN, ProtocolError

log = logging.getLogger("mapscope.live")
STATIC = files("mapscope.live") / "static"
PAGES = {"index": "index.html", "unit": "unit.html"}
ASSETS = {"live.js": "text/javascript", "unit.js": "text/javascript", "live.css": "text/css"}
MAX_UPLOAD = 8 * 1024 * 1024  # bytes of an uploaded image file
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


def create_app(
    model: LiveModel,
    atlas: Path | None = None,
    allowed_hosts: list[str] | None = None,
    source: str = "",
) -> Starlette:
    """The app serving ``model`` (and the atlas in ``atlas``, when given)."""
    state = AppState(model, _atlas_files(atlas), source or model.inspection.source)
    routes = [
        Route("/", state.page("index")),
        Route("/unit/{layer}/{unit:int}", state.unit_page),
        Route("/static/{name}", state.asset),
        Route("/api/model", state.hello),
        Route("/api/image", state.dataset_image),
        Route("/api/upload", state.upload, methods=["POST"]),
        Route("/api/oip/{layer}/{unit:int}.png", state.oip),
        Route("/atlas/{path:path}", state.atlas_file),
        Route("/favicon.ico", _no_icon),  # the atlas's pages name none; the browser asks
        WebSocketRoute("/ws", state.socket),
    ]
    hosts = allowed_hosts or ["127.0.0.1", "localhost", "testserver"]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=hosts)],
        exception_handlers={404: _not_found, 405: _not_allowed},
    )
    app.state.live = state
    return app


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=SECURITY_HEADERS)


async def _no_icon(request: Request) -> Response:
    return Response(status_code=204)


async def _not_found(request: Request, exc) -> JSONResponse:
    return _error(
        f"nothing at {request.url.path}; the app's pages are / and /unit/LAYER/UNIT.", 404
    )


async def _not_allowed(request: Request, exc) -> JSONResponse:
    return _error(f"{request.method} is not answered at {request.url.path}.", 405)


def _atlas_files(atlas: Path | None) -> dict[str, Path]:
    """Every file of the atlas by its path inside it: the only atlas paths ever served."""
    if atlas is None:
        return {}
    root = Path(atlas).resolve()
    return {
        p.relative_to(root).as_posix(): p
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink() and ".cache" not in p.relative_to(root).parts
    }


class AppState:
    def __init__(self, model: LiveModel, atlas: dict[str, Path], source: str):
        self.model = model
        self.atlas = atlas
        self.source = source
        self.compute = CapacityLimiter(1)  # one model call at a time, shared by every client
        self.searches = CapacityLimiter(1)  # OIP searches run beside drawings, one at a time
        self.connections = 0
        self.greeting = self._make_hello()  # the hello message: layers, scales, classes

    # --- pages -------------------------------------------------------------------------------

    def page(self, name: str):
        async def serve(request: Request) -> Response:
            return _static(PAGES[name], "text/html; charset=utf-8")

        return serve

    async def unit_page(self, request: Request) -> Response:
        layer, unit = request.path_params["layer"], request.path_params["unit"]
        try:
            self.model.check_unit(layer, unit)
        except MapscopeError as exc:
            return _error(str(exc), 404)
        return _static(PAGES["unit"], "text/html; charset=utf-8")

    async def asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ASSETS:
            return _error(f"no asset {name!r}; the assets are {', '.join(ASSETS)}.", 404)
        return _static(name, ASSETS[name])

    async def atlas_file(self, request: Request) -> Response:
        path = request.path_params["path"] or "index.html"
        found = self.atlas.get(path)
        if found is None:
            return _error(f"the atlas has no page {path!r}.", 404)
        return FileResponse(found, headers=SECURITY_HEADERS)

    # --- JSON API ----------------------------------------------------------------------------

    async def hello(self, request: Request) -> Response:
        return JSONResponse(self.greeting, headers=SECURITY_HEADERS)

    def _make_hello(self) -> dict:
        model = self.model
        layers = []
        for view in model.layers:
            entry = view.to_dict()
            unit_page = f"layers/{view.name}/units/0.html"
            entry["unit_url"] = (
                f"/atlas/layers/{view.name}/units/{{unit}}.html"
                if unit_page in self.atlas
                else f"/unit/{view.name}/{{unit}}"
            )
            layers.append(entry)
        channels, height, width = model.input_shape
        hello = {
            "source": self.source,
            "dataset": model.bundle.dataset.name,
            "kind": "autoencoder" if model.autoencoder else "classifier",
            "class_names": list(model.class_names),
            "input": [channels, height, width],
            "layers": layers,
            "methods": [] if model.autoencoder else _methods(model),
            "gradcam_layer": None if model.autoencoder else model.gradcam_layer,
            "alike_layer": model.alike_layer,
            "centre": model.bundle.dataset.name.startswith("mnist"),
            "test_images": int(len(model.bundle.split.test)),
            "atlas": "/atlas/index.html" if "index.html" in self.atlas else None,
            "colours": {"sequential": _colour_table("viridis"), "signed": _colour_table("RdBu_r")},
            "max_frame": protocol.MAX_FRAME,
        }
        if model.autoencoder:
            axes = model.latent_axes()
            hello["latent"] = {
                "mean": axes.mean.tolist(),
                "std": axes.std.tolist(),
                "axes": len(axes.components),
                "explained": axes.explained.tolist(),
            }
        return hello

    async def dataset_image(self, request: Request) -> Response:
        """A test (or training) image by index, or a random one, optionally of one class."""
        query = request.query_params
        part = query.get("part", "test")
        bundle = self.model.bundle
        if part not in ("test", "train"):
            return _error(f"part must be test or train; got {part!r}.")
        count = len(bundle.split.indices(part))
        try:
            if "index" in query:
                index = int(query["index"])
                if not 0 <= index < count:
                    raise ValueError
            else:
                index = self._random_index(part, query.get("label"), query.get("seed"))
        except (TypeError, ValueError):
            return _error(
                f"index must be a whole number 0..{count - 1} of the {part} images; label a "
                f"class 0..{len(self.model.class_names) - 1}."
            )
        except MapscopeError as exc:
            return _error(str(exc))
        label = int(bundle.labels(part, [index])[0])
        pixels = bundle.raw(part, [index])[0]
        return JSONResponse(
            {
                "part": part,
                "index": index,
                "label": label,
                "class_name": self.model.class_names[label],
                "shape": list(pixels.shape),
                "pixels": pixels.reshape(-1).tolist(),
            },
            headers=SECURITY_HEADERS,
        )

    def _random_index(self, part: str, label: str | None, seed: str | None) -> int:
        labels = self.model.bundle.labels(part)
        rng = np.random.default_rng(None if seed is None else int(seed))
        if label is None:
            return int(rng.integers(len(labels)))
        wanted = int(label)
        if not 0 <= wanted < len(self.model.class_names):
            raise ValueError
        return int(rng.choice(np.flatnonzero(labels == wanted)))

    async def upload(self, request: Request) -> Response:
        """An image file read exactly as ``mapscope cnn predict --image`` reads it."""
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > MAX_UPLOAD:
                return _error(f"the file is over {MAX_UPLOAD // 2**20} MiB; send a drawing.", 413)
        if not body:
            return _error("the request holds no image; send the file's bytes as the body.")
        _, height, width = self.model.input_shape
        if height != width:
            return _error(f"uploads are read as square images; this model reads {height}x{width}.")
        try:
            pixels = await run_sync(
                partial(read_drawing, io.BytesIO(bytes(body)), height, name="the uploaded file")
            )
        except MapscopeError as exc:
            return _error(str(exc))
        return JSONResponse(
            {"shape": [height, width], "pixels": pixels[0].reshape(-1).tolist()},
            headers=SECURITY_HEADERS,
        )

    async def oip(self, request: Request) -> Response:
        layer, unit = request.path_params["layer"], request.path_params["unit"]
        try:
            self.model.check_unit(layer, unit)
            image = await run_sync(partial(self.model.unit_oip, layer, unit), limiter=self.searches)
        except MapscopeError as exc:
            return _error(str(exc), 404)
        return Response(pictures.grey(image), media_type="image/png", headers=SECURITY_HEADERS)

    # --- the WebSocket -----------------------------------------------------------------------

    async def socket(self, websocket: WebSocket) -> None:
        if not _same_origin(websocket):
            await websocket.close(code=1008, reason="cross-origin connections are refused")
            return
        await websocket.accept()
        self.connections += 1
        try:
            await Connection(self, websocket).run()
        finally:
            self.connections -= 1

    def respond(self, request: protocol.Request) -> list[bytes]:
        """The frames answering one request (runs in a worker thread)."""
        start = time.perf_counter()
        model = self.model
        if request.kind == DRAW:
            frame = bytearray(protocol.encode_answer(request.seq, model.answer(
                request.pixels, request.centre), model.layers))  # fmt: skip
            struct.pack_into("<f", frame, 5, (time.perf_counter() - start) * 1000)
            return [bytes(frame)]
        if request.kind == DECODE:
            code = request.values
            if request.mode == 1:
                code = model.code_from_axes(code)
            return [protocol.encode_decoded(request.seq, code, model.decode(code))]
        frames = []
        if not model.autoencoder:
            explanation = model.explain(request.pixels, request.method, request.centre)
            frames.append(protocol.encode_explanation(request.seq, explanation))
        frames.append(protocol.encode_alike(request.seq, model.alike(request.pixels, 8,
                                                                      request.centre)))  # fmt: skip
        return frames


def _methods(model: LiveModel) -> list[str]:
    return [m for m in LIVE_METHODS if m != "gradcam" or model.gradcam_layer is not None]


def _colour_table(name: str) -> list[list[int]]:
    from matplotlib import colormaps

    table = colormaps[name](np.linspace(0, 1, 256))[:, :3]
    return (table * 255).round().astype(int).tolist()


def _static(name: str, media_type: str) -> Response:
    return Response((STATIC / name).read_bytes(), media_type=media_type, headers=SECURITY_HEADERS)


def _same_origin(websocket: WebSocket) -> bool:
    """A page of another site may not drive this server from the user's browser: a browser's
    handshake names the page's origin, which must be this server."""
    origin = websocket.headers.get("origin")
    if origin is None:  # not a browser (a script, the benchmark's load client)
        return True
    return urlsplit(origin).netloc == websocket.headers.get("host")


class Connection:
    """One browser: a reader that keeps the latest frame of each kind, and a worker that
    answers the newest drawing first."""

    PRIORITY = (DRAW, DECODE, EXPLAIN)

    def __init__(self, state: AppState, websocket: WebSocket):
        self.state = state
        self.websocket = websocket
        self.pending: dict[int, protocol.Request] = {}
        self.wake = asyncio.Event()
        self.sending = asyncio.Lock()
        self.dropped = 0

    async def run(self) -> None:
        await self.send_text({"type": "hello", **self.state.greeting})
        worker = asyncio.create_task(self.work())
        try:
            while True:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                data = message.get("bytes")
                if data is None:
                    await self.error("frames are binary (see mapscope.live.protocol); got text.")
                    continue
                try:
                    request = protocol.parse(data, self.state.model.input_shape)
                except ProtocolError as exc:
                    await self.error(str(exc))
                    continue
                if request.kind in self.pending:
                    self.dropped += 1  # latest wins: the stale frame is never answered
                self.pending[request.kind] = request
                self.wake.set()
        except WebSocketDisconnect:
            pass
        finally:
            worker.cancel()

    async def work(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.pending:
                kind = next(k for k in self.PRIORITY if k in self.pending)
                request = self.pending.pop(kind)
                try:
                    frames = self.answer_now(request)
                    if frames is None:
                        frames = await run_sync(
                            partial(self.state.respond, request), limiter=self.state.compute
                        )
                except MapscopeError as exc:
                    await self.error(str(exc))
                    continue
                except Exception as exc:  # the user's network failed on this input
                    log.exception("live: request %s failed", request.kind)
                    await self.error(
                        f"the model failed on this input ({type(exc).__name__}: {exc})."
                    )
                    continue
                for frame in frames:
                    await self.send_bytes(frame)

    def answer_now(self, request: protocol.Request) -> list[bytes] | None:
        """A drawing is answered on the event loop when the model is free: a forward pass
        (about a millisecond) costs less than handing it to a thread and back. Slower work
        (attributions, neighbours, decoding) and a busy model go to the worker thread."""
        lock = self.state.model.lock
        if request.kind != DRAW or not lock.acquire(blocking=False):
            return None
        try:
            return self.state.respond(request)
        finally:
            lock.release()

    async def send_bytes(self, data: bytes) -> None:
        async with self.sending:  # the browser may leave while the answer is on its way
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                await self.websocket.send_bytes(data)

    async def send_text(self, message: dict) -> None:
        async with self.sending:
            await self.websocket.send_text(json.dumps(message))

    async def error(self, message: str) -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await self.send_text({"type": "error", "message": message})
