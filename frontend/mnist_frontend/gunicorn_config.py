"""gunicorn settings for the frontend, used as `gunicorn --config python:mnist_frontend.gunicorn_config ...`.

Flags on the command line and GUNICORN_CMD_ARGS override these (e.g. `--bind 127.0.0.1:5000` locally).
"""

import os

bind = "0.0.0.0:8080"
# Requests mostly wait on the model server, so threads, not processes, carry the concurrency:
# two workers fit a 2-core pod, eight threads each keep slow predictions from blocking the page.
worker_class = "gthread"
workers = 2
threads = 8
timeout = 30
graceful_timeout = 20
keepalive = 5
accesslog = "-"
errorlog = "-"
# Worker heartbeats on tmpfs: a slow or read-only root filesystem must not get workers killed.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
