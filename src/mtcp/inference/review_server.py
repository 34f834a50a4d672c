"""``mtcp review PRED_DIR``: a local web page to work through the review queue.

A small Starlette app (the ``review`` extra: ``pip install 'mtcp[review]'``) served by uvicorn on
``127.0.0.1`` only. The page (``review_page.html``) lists the queue of
:class:`~mtcp.inference.review_queue.ReviewQueue`, shows the input, every task's map with its
scale and the reasons, and posts each accept / reject (with its note) as soon as it is made; the
server writes ``review.csv`` atomically before it answers. A decision the server could not
take (it was stopped) stays in the page's local storage, marked unsaved, and is sent again
when the page reaches a server for the same folder.

Routes: ``GET /`` the page; ``GET /api/queue`` the queue as JSON; ``POST /api/decision``
``{"input", "decision", "note"}``; ``GET /files/PATH`` a PNG inside the folder;
``GET /normals_key.png`` the colour key of the normals.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from importlib import resources
from pathlib import Path
from typing import Any

from mtcp.errors import MtcpError
from mtcp.inference.review_queue import ReviewQueue, legends

HOST = "127.0.0.1"


def _require() -> None:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise MtcpError(
            "mtcp review needs the review extra: pip install 'mtcp[review]' (Starlette and uvicorn)"
        ) from None


def normals_key_png(size: int = 96) -> bytes:
    """PNG of the normals colour key (:func:`mtcp.viz.normals_key`)."""
    from mtcp.io import png_bytes
    from mtcp.viz import normals_key

    return png_bytes(normals_key(size))


def create_app(pred_dir: str | Path) -> Any:
    """The Starlette application over ``pred_dir`` (decisions saved to its ``review.csv``)."""
    _require()
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    queue = ReviewQueue(pred_dir)
    page = resources.files("mtcp.inference").joinpath("review_page.html").read_text("utf-8")
    key = normals_key_png()

    async def index(request: Request) -> HTMLResponse:
        return HTMLResponse(page)

    async def get_queue(request: Request) -> JSONResponse:
        data = queue.as_json()
        for entry, item in zip(data["items"], queue.ordered()):
            entry["legends"] = legends(item)
        return JSONResponse(data)

    async def post_decision(request: Request) -> JSONResponse:
        try:
            body = await request.json()
            item = queue.decide(
                str(body.get("input", "")), str(body.get("decision", "")), str(body.get("note", ""))
            )
        except (MtcpError, ValueError, AttributeError) as err:
            return JSONResponse({"ok": False, "error": str(err)}, status_code=400)
        return JSONResponse({"ok": True, "input": item.input, "summary": queue.summary()})

    async def get_file(request: Request) -> Response:
        path = (queue.root / request.path_params["path"]).resolve()
        if queue.root not in path.parents or path.suffix.lower() != ".png" or not path.is_file():
            return Response("not found", status_code=404)
        return FileResponse(path, media_type="image/png")

    async def normals_key(request: Request) -> Response:
        return Response(key, media_type="image/png")

    return Starlette(
        routes=[
            Route("/", index),
            Route("/api/queue", get_queue),
            Route("/api/decision", post_decision, methods=["POST"]),
            Route("/files/{path:path}", get_file),
            Route("/normals_key.png", normals_key),
        ]
    )


def bind(port: int = 0, host: str = HOST) -> socket.socket:
    """A listening socket on ``host:port`` (0 = a free port); a clear error when it is taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # rebinding right after a restart (TIME_WAIT) is allowed; a listening socket still refuses
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise MtcpError(
                f"port {port} on {host} is already in use; pass another --port or --port 0 "
                "for a free one"
            ) from None
        raise MtcpError(f"cannot listen on {host}:{port} ({err.strerror})") from None
    sock.listen(16)
    return sock


def serve(pred_dir: str | Path, port: int = 0, on_ready: Any = None) -> None:
    """Serve the review page of ``pred_dir`` on 127.0.0.1 until interrupted.

    ``on_ready(url)`` is called once the socket listens (the CLI prints the address).
    """
    _require()
    import uvicorn

    app = create_app(pred_dir)
    sock = bind(port)
    url = f"http://{HOST}:{sock.getsockname()[1]}/"
    if on_ready is not None:
        on_ready(url)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[sock])
