"""A Flask admission webhook with no tracing code, served by werkzeug on 127.0.0.1:0."""

from __future__ import annotations

from typing import Any

from apps.webhook_common import MODE, decide, instrument_in_order, report


def create_app() -> Any:
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    instrument_in_order(FlaskInstrumentor)
    import flask

    app = flask.Flask(__name__)

    @app.post("/validate")
    def validate() -> Any:
        return flask.jsonify(decide(flask.request.get_json()))

    @app.post("/validate-bad-uid")
    def validate_bad_uid() -> Any:
        return flask.jsonify(decide(flask.request.get_json(), bad_uid=True))

    @app.get("/healthz")
    def healthz() -> str:
        return "ok"

    if MODE == "middleware":
        from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

        app.wsgi_app = OpenTelemetryMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    return app


def main() -> None:
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, create_app(), threaded=True)
    report(server.server_port)
    server.serve_forever()


if __name__ == "__main__":
    main()
