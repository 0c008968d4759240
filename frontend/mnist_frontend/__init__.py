"""The MNIST drawing frontend: a Flask app that asks a Seldon model server for digit probabilities.

Started by gunicorn as `mnist_frontend:create_app()`.
"""

from flask import Flask, current_app, request
from werkzeug.exceptions import HTTPException

from . import settings, views
from .digits import DigitStore

# The page loads nothing from elsewhere: scripts, styles and images come from this app or data: URLs.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app: settings from defaults, then FRONTEND_* environment variables, then `test_config`."""
    app = Flask(__name__)
    app.config.from_mapping(settings.DEFAULTS)
    app.config.from_prefixed_env(settings.ENV_PREFIX)
    if test_config is not None:
        app.config.from_mapping(test_config)
    settings.validate(app.config)

    digits = DigitStore(app.config["DATA_DIR"])
    if digits.data_dir is not None and digits.split() is None:
        app.logger.warning(
            "no MNIST IDX files in %s yet: the random digit button shows once they are there", digits.data_dir
        )
    app.extensions["mnist_digits"] = digits
    app.register_blueprint(views.bp)
    app.register_error_handler(HTTPException, _http_exception)
    app.register_error_handler(Exception, _unexpected_exception)
    app.after_request(_security_headers)
    return app


def _http_exception(exc: HTTPException):
    # API clients (the page's fetch) get JSON they can show; everything else keeps Flask's HTML page.
    if not request.path.startswith("/api/"):
        return exc
    if exc.code == 413:
        limit = current_app.config["MAX_CONTENT_LENGTH"]
        return views.error(413, f"the request is larger than the limit of {limit} bytes (FRONTEND_MAX_CONTENT_LENGTH)")
    return views.error(exc.code or 500, exc.description or exc.name)


def _unexpected_exception(exc: Exception):
    # Logged with its traceback here; the client sees a message, never the stack trace.
    current_app.logger.exception("unexpected error on %s", request.path)
    return views.error(500, "internal error in the frontend; see its log")


def _security_headers(response):
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response
