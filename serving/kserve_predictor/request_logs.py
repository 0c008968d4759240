"""No log line per request on kserve's ModelServer, unless asked (serve_mnist.py's `--access_log`)."""

import logging

from kserve.logging import KSERVE_TRACE_LOGGER_NAME

# uvicorn's access log, and kserve's timing middleware, which logs two lines (wall and CPU time) for
# every request: about 5% of the server's CPU, and a flood in `kubectl logs`.
REQUEST_LOGGERS = ("uvicorn.access", KSERVE_TRACE_LOGGER_NAME)


def quiet_request_logs() -> None:
    """The request loggers at WARNING in this process."""
    for name in REQUEST_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
