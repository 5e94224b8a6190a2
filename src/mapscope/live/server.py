"""Serving the live app with uvicorn: in the foreground for ``mapscope live`` (Ctrl-C stops it),
or in a background thread for a notebook (``Inspection.live()``), where the returned object
shows the app inline."""

from __future__ import annotations

import errno
import html
import socket
import threading
import time

import uvicorn

from mapscope.errors import ConfigError

LOCAL = "127.0.0.1"
DEFAULT_PORT = 8765
# frames over protocol.MAX_FRAME get an error message; past this the WebSocket layer itself
# closes the connection (code 1009), so no client can make the server buffer more
WS_MAX_BYTES = 1024 * 1024


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound now so that a port in use is one clear error."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be 0..65535 (0: any free port); got {port}.")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is in use (another mapscope live?); pass --port N, or "
                "--port 0 for any free port."
            ) from None
        raise ConfigError(
            f"cannot listen on {host}:{port} ({exc.strerror}); pass another --host."
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class LiveServer:
    """A live app served on ``url``; ``stop()`` ends it. Jupyter displays it inline."""

    def __init__(self, app, host: str = LOCAL, port: int = DEFAULT_PORT, sock=None):
        self.app = app
        self.socket = sock if sock is not None else bind(host, port)
        self.host = host
        self.port = self.socket.getsockname()[1]
        config = uvicorn.Config(
            app,
            # no logging set-up of uvicorn's own: its handlers would keep the sys.stderr of the
            # moment (in Jupyter, a cell's stream, closed later); warnings reach the root
            # logger, which prints them to the sys.stderr of the moment they happen
            log_config=None,
            log_level="warning",
            ws="websockets-sansio",
            ws_max_size=WS_MAX_BYTES,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(config)
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        shown = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{shown}:{self.port}/"

    def serve(self) -> None:
        """Serve until Ctrl-C (uvicorn stops gracefully, then the KeyboardInterrupt arrives)."""
        self.server.run(sockets=[self.socket])

    def start(self) -> LiveServer:
        """Serve from a background thread; returns once the app answers."""
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the live app did not start; see the log above.")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving and the model's background work; the port is free afterwards."""
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)
        self.socket.close()
        state = getattr(self.app.state, "live", None)
        if state is not None:
            state.model.close()

    def __enter__(self) -> LiveServer:
        return self if self.thread is not None else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.server.started and not self.server.should_exit else "stopped"
        return f"LiveServer({self.url}, {state})"

    def _repr_html_(self) -> str:
        url = html.escape(self.url)
        return (
            f'<iframe src="{url}" width="100%" height="900" style="border:1px solid #ccc" '
            f'title="mapscope live"></iframe><p><a href="{url}" target="_blank">{url}</a></p>'
        )
