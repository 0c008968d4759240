"""Error handling added to Seldon's REST app, so that no bad request is ever answered with a 500.

seldon-core 1.17.1 registers one Flask handler for every Exception, which turns
a 404, a 405, a form field that is not JSON or JSON nested too deeply for the
parser into "500 internal error". The blueprint below, which Seldon registers from
the model's `model_error_handler` attribute, answers those with their real 4xx
status and a Seldon-style JSON body. When registered it also gives the app a
request class that
  - refuses a body over the limit derived from max_batch with a 413 before reading
    it (by its Content-Length, or after limit + 1 bytes of a chunked body), and
  - replaces Seldon's terse "Can't find JSON in data" with what was expected: a hook
    on the failure path, so requests that are fine pay nothing for it (a
    before-request check would cost every prediction about 3% of the throughput).
"""

import io
import json

from flask import Blueprint, Request, current_app, jsonify
from request_validation import body_too_large_message
from seldon_core.flask_utils import SeldonMicroserviceException
from seldon_requests import EXPECTED
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.utils import cached_property
from werkzeug.wsgi import get_input_stream

MAX_BATCH_KEY = "MNIST_MAX_BATCH"


class RequestError(SeldonMicroserviceException):
    """A Seldon error whose str() is its message, so gRPC clients see it too (Seldon's own str() is empty)."""

    def __str__(self) -> str:
        return self.message


class JsonRequest(Request):
    """Flask's request with a bounded body, whose failure to read JSON says what was expected (Seldon answers 400)."""

    @cached_property
    def stream(self):
        """The body, refused with a 413 when it is over MAX_CONTENT_LENGTH, before more than that is read."""
        limit = self.max_content_length
        raw = get_input_stream(self.environ)
        if limit is None:
            return raw
        max_batch = current_app.config[MAX_BATCH_KEY]
        if self.content_length is not None:
            if self.content_length > limit:
                raise RequestEntityTooLarge(body_too_large_message(self.content_length, limit, max_batch))
            return raw
        data = raw.read(limit + 1)
        if len(data) > limit:
            raise RequestEntityTooLarge(body_too_large_message(None, limit, max_batch))
        return io.BytesIO(data)

    def get_json(self, force: bool = False, silent: bool = False, cache: bool = True):
        """Flask's get_json, except that a body of JSON null is refused (Seldon would say "Can't find JSON")."""
        result = super().get_json(force, silent, cache)
        if result is None and not silent:
            raise RequestError(f"the body is JSON null: expected {EXPECTED}")
        return result

    def on_json_loading_failed(self, e: ValueError | None):
        """Called by get_json() when the Content-Type is not JSON (`e` is None) or the body does not parse."""
        if e is None:
            content_type = self.mimetype or "missing"
            raise RequestError(f"Content-Type is {content_type}: expected application/json and {EXPECTED}")
        raise RequestError(f"the body is not valid JSON: expected {EXPECTED}")


def _error_response(message: str, status_code: int, reason: str):
    response = jsonify(RequestError(message, status_code, reason=reason).to_dict())
    response.status_code = status_code
    return response


def error_blueprint(max_batch: int, max_body_bytes: int) -> Blueprint:
    """Return a Flask blueprint with the request class, body limit and error handlers described above."""
    blueprint = Blueprint("mnist_classifier_errors", __name__)

    def configure(state) -> None:
        state.app.request_class = JsonRequest
        state.app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
        state.app.config[MAX_BATCH_KEY] = max_batch

    blueprint.record_once(configure)

    @blueprint.app_errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return _error_response(f"{exc.name}: {exc.description}", exc.code or 400, "MICROSERVICE_BAD_REQUEST")

    @blueprint.app_errorhandler(json.JSONDecodeError)
    def form_field_not_json(exc: json.JSONDecodeError):
        return _error_response(
            f"a form field is not valid JSON ({exc}): expected {EXPECTED}", 400, "MICROSERVICE_BAD_DATA"
        )

    @blueprint.app_errorhandler(RecursionError)
    def nested_too_deeply(exc: RecursionError):
        return _error_response(
            f"the JSON is nested too deeply to parse: expected {EXPECTED}", 400, "MICROSERVICE_BAD_DATA"
        )

    return blueprint
