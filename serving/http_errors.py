"""Error handling added to Seldon's REST app, so that no bad request is ever answered with a 500.

seldon-core 1.17.1 registers one Flask handler for every Exception, which turns
a 404, a 405 or a form field that is not JSON into "500 internal error". The
blueprint below, which Seldon registers from the model's `model_error_handler`
attribute, answers those with their real 4xx status and a Seldon-style JSON body,
and replaces Seldon's terse "Can't find JSON in data" with what was expected.
"""

import json

from flask import Blueprint, jsonify, request
from request_validation import EXPECTED
from seldon_core.flask_utils import SeldonMicroserviceException
from werkzeug.exceptions import HTTPException

# Flask endpoint name of Seldon's /api/v1.0/predictions route (its view function is `Predict`).
PREDICT_ENDPOINT = "Predict"


class RequestError(SeldonMicroserviceException):
    """A Seldon error whose str() is its message, so gRPC clients see it too (Seldon's own str() is empty)."""

    def __str__(self) -> str:
        return self.message


def _error_response(message: str, status_code: int, reason: str):
    response = jsonify(RequestError(message, status_code, reason=reason).to_dict())
    response.status_code = status_code
    return response


def error_blueprint() -> Blueprint:
    """Return a Flask blueprint with the request check and error handlers described above."""
    blueprint = Blueprint("mnist_classifier_errors", __name__)

    @blueprint.before_app_request
    def require_json_body():
        if request.endpoint != PREDICT_ENDPOINT or request.method != "POST":
            return None
        if request.mimetype == "multipart/form-data":
            return None  # Seldon's form upload; its JSON fields are checked by `form_field_not_json`.
        if request.is_json:
            if request.get_json(silent=True) is None:
                raise RequestError(f"the body is not valid JSON: expected {EXPECTED}")
            return None
        if request.form.get("json") or request.args.get("json"):
            return None  # Seldon's `json=` form/query parameter.
        content_type = request.mimetype or "missing"
        raise RequestError(f"Content-Type is {content_type}: expected application/json and {EXPECTED}")

    @blueprint.app_errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return _error_response(f"{exc.name}: {exc.description}", exc.code or 400, "MICROSERVICE_BAD_REQUEST")

    @blueprint.app_errorhandler(json.JSONDecodeError)
    def form_field_not_json(exc: json.JSONDecodeError):
        return _error_response(
            f"a form field is not valid JSON ({exc}): expected {EXPECTED}", 400, "MICROSERVICE_BAD_DATA"
        )

    return blueprint
