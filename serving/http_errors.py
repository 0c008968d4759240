"""Error handling added to Seldon's REST app, so that no bad request is ever answered with a 500.

seldon-core 1.17.1 registers one Flask handler for every Exception, which turns
a 404, a 405 or a form field that is not JSON into "500 internal error". The
blueprint below, which Seldon registers from the model's `model_error_handler`
attribute, answers those with their real 4xx status and a Seldon-style JSON body.
When registered it also gives the app a request class that replaces Seldon's terse
"Can't find JSON in data" with what was expected: a hook on the failure path, so
requests that are fine pay nothing for it (a before-request check would cost every
prediction about 3% of the server's throughput).
"""

import json

from flask import Blueprint, Request, jsonify
from request_validation import EXPECTED
from seldon_core.flask_utils import SeldonMicroserviceException
from werkzeug.exceptions import HTTPException


class RequestError(SeldonMicroserviceException):
    """A Seldon error whose str() is its message, so gRPC clients see it too (Seldon's own str() is empty)."""

    def __str__(self) -> str:
        return self.message


class JsonRequest(Request):
    """Flask's request, whose failure to read a JSON body says what was expected (Seldon then answers 400)."""

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


def error_blueprint() -> Blueprint:
    """Return a Flask blueprint with the request class and error handlers described above."""
    blueprint = Blueprint("mnist_classifier_errors", __name__)

    blueprint.record_once(lambda state: setattr(state.app, "request_class", JsonRequest))

    @blueprint.app_errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return _error_response(f"{exc.name}: {exc.description}", exc.code or 400, "MICROSERVICE_BAD_REQUEST")

    @blueprint.app_errorhandler(json.JSONDecodeError)
    def form_field_not_json(exc: json.JSONDecodeError):
        return _error_response(
            f"a form field is not valid JSON ({exc}): expected {EXPECTED}", 400, "MICROSERVICE_BAD_DATA"
        )

    return blueprint
