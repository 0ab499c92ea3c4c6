"""The Celery application of distributed mode, built from the settings (broker and results on Redis).

Reliability settings, and why:

* ``task_acks_late`` + ``task_reject_on_worker_lost``: a task is acknowledged only once done, so
  the work of a worker that dies mid-task goes back to the queue instead of vanishing.
* ``visibility_timeout`` above ``task_time_limit``: Redis hands an unacknowledged task to another
  worker only after this, so a slow but healthy task is never run twice meanwhile.
* the unacked sweep runs every quarter visibility timeout, so a killed worker's task comes back
  within ~1.25x the timeout instead of kombu's default ~100 s.
* ``worker_prefetch_multiplier = 1``: a busy worker does not hoard chunks others could score.
* JSON only: nothing read from the broker can run code (see ``wire.py``).
"""

from __future__ import annotations

import redis
from celery import Celery

from services.reward_api.core.errors import ConfigError
from services.reward_api.core.settings import Settings

SCORE_CHUNK = "rlrf.score_chunk"
RENDER_REFERENCE = "rlrf.render_reference"
EMBED = "rlrf.embed"  # learned-model features, on the GPU queue
REFERENCE_KEY = "rlrf:ref:{}"
REFERENCE_TTL_S = 3600


def make_celery(settings: Settings) -> Celery:
    """A Celery app for ``settings`` (the API uses it to send, ``rlrf worker`` to consume).

    Raises:
        ConfigError: the visibility timeout would let Redis hand a running chunk to a second worker.
    """
    if settings.visibility_timeout_s <= settings.task_time_limit_s + settings.render_timeout_s:
        raise ConfigError(
            f"visibility_timeout_s ({settings.visibility_timeout_s:g}) must exceed task_time_limit_s + "
            f"render_timeout_s ({settings.task_time_limit_s + settings.render_timeout_s:g}): Redis would hand a "
            "running chunk to a second worker"
        )
    app = Celery("rlrf", broker=settings.redis_url, backend=settings.redis_url)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=settings.task_time_limit_s,
        task_default_queue=settings.cpu_queue,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            # Sweep for abandoned (unacknowledged) tasks a few times per visibility timeout;
            # kombu's default sweep period is ~100 s whatever the timeout.
            "unacked_restore_interval": max(1, int(settings.visibility_timeout_s / 4)),
            "unacked_restore_throttle": 1,
            # A Redis that vanishes without closing the socket must not hang a publish forever, and a pooled
            # connection that died during a partition is found (PING) before it is used again.
            "socket_timeout": 10,
            "socket_connect_timeout": 5,
            "socket_keepalive": True,
            "health_check_interval": 5,
            "retry_on_timeout": True,
        },
        redis_socket_timeout=10,
        redis_socket_connect_timeout=5,
        redis_socket_keepalive=True,
        redis_backend_health_check_interval=5,
        redis_retry_on_timeout=True,
        result_expires=3600,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    return app


def redis_client(settings: Settings) -> redis.Redis:
    """A Redis client for the API's collector and the workers' reference fetches: bounded waits, and dead
    connections (a partition, a restart) noticed before they are used."""
    return redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=10,
        socket_connect_timeout=5,
        socket_keepalive=True,
        health_check_interval=5,
    )
