"""The example webhook for gunicorn: configure() runs at import, in the master, before the fork."""

import k8s_otel
from k8s_otel.webhook import WSGIMiddleware
from webhook_support import make_wsgi_app

k8s_otel.configure(service_name="gunicorn-webhook")
app = WSGIMiddleware(make_wsgi_app(), webhook_type="validating")
