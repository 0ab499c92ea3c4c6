"""Distributed mode: Celery tasks on Redis that run the same sandboxed scoring as embedded mode."""
