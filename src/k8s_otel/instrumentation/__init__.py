"""Instrumentation for Kubernetes controllers: the ``kubernetes`` and ``kubernetes_asyncio`` clients, and kopf."""
