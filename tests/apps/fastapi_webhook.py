"""A FastAPI admission webhook with no tracing code, served by uvicorn on 127.0.0.1:0."""

from __future__ import annotations

import socket
from typing import Any

from apps.webhook_common import MODE, decide, instrument_in_order, report


def create_app() -> Any:
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    instrument_in_order(FastAPIInstrumentor)
    import fastapi

    app = fastapi.FastAPI()

    @app.post("/validate")
    async def validate(review: dict[str, Any]) -> dict[str, Any]:
        return decide(review)

    @app.post("/validate-bad-uid")
    async def validate_bad_uid(review: dict[str, Any]) -> dict[str, Any]:
        return decide(review, bad_uid=True)

    @app.get("/healthz")
    async def healthz() -> str:
        return "ok"

    if MODE == "middleware":
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        app.add_middleware(OpenTelemetryMiddleware)
    return app


def main() -> None:
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(), log_level="warning", lifespan="off"))
    report(sock.getsockname()[1])
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
