"""What KServe's ModelServer needs in front of the model so that no hostile request costs much or becomes a 500.

`install(app, max_batch, max_body_bytes)` adds to kserve's FastAPI app, before it starts:
  - an ASGI middleware that refuses a body over max_body_bytes with 413 before reading
    more than that (by its Content-Length, or after limit + 1 bytes of a chunked body),
    and answers 400 with the expected format for a prediction whose body is not JSON
    (wrong Content-Type, malformed, or nested beyond what the parser takes): kserve
    itself would say only "Unrecognized request format";
  - handlers that give FastAPI's own 4xx answers (a V2 body that does not fit the
    protocol's schema, an unknown path or method) kserve's `{"error": "..."}` form and
    a message that says what was expected.
"""

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import ORJSONResponse
from kserve_requests import EXPECTED_V1, EXPECTED_V2
from request_validation import body_too_large_message
from starlette.exceptions import HTTPException

JSON_TYPES = ("application/json", "application/cloudevents+json", "application/ld+json")
# The V2 binary extension: a JSON header of this length, then raw tensor bytes.
BINARY_HEADER = b"inference-header-content-length"
ENDPOINTS = (
    "POST /v1/models/<name>:predict, POST /v2/models/<name>/infer, GET /v2/models/<name>/ready, GET /v2/health/ready"
)


def _expected_for(path: str) -> str | None:
    if path.startswith("/v1/") and path.endswith(":predict"):
        return EXPECTED_V1
    if path.startswith("/v2/") and path.endswith("/infer"):
        return EXPECTED_V2
    return None


async def _answer(send, status: int, message: str) -> None:
    body = orjson.dumps({"error": message})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """ASGI middleware: bounded bodies, and predictions whose body is JSON (see the module docstring)."""

    def __init__(self, app, max_batch: int, max_body_bytes: int):
        self.app = app
        self.max_batch = max_batch
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        limit = self.max_body_bytes
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _answer(send, 413, body_too_large_message(int(declared), limit, self.max_batch))
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _answer(send, 413, body_too_large_message(None, limit, self.max_batch))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        expected = _expected_for(scope["path"])
        if expected is not None:
            problem = _not_json(headers, body)
            if problem:
                await _answer(send, 400, f"{problem}: expected {expected}")
                return
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def _not_json(headers: dict, body: bytes) -> str | None:
    if BINARY_HEADER in headers:
        return None
    content_type = headers.get(b"content-type", b"").split(b";")[0].strip().decode("latin-1").lower()
    if content_type and content_type not in JSON_TYPES:
        return f"Content-Type is {content_type:.80}, not application/json"
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return f"the body is not valid JSON ({exc})"
    if not isinstance(parsed, dict):
        return f"the body is a JSON {type(parsed).__name__}, not an object"
    return None


def _validation_error(request: Request, exc: RequestValidationError) -> ORJSONResponse:
    problems = "; ".join(
        f"{'.'.join(str(part) for part in error.get('loc', ())[1:]) or 'body'}: {error.get('msg')}"
        for error in exc.errors()[:5]
        # The V2 route also takes the binary extension's raw bytes: that alternative's error says nothing.
        if error.get("loc", ())[1:2] != ("bytes",)
    )
    expected = _expected_for(request.url.path) or ENDPOINTS
    return ORJSONResponse({"error": f"the request does not fit the protocol ({problems}): expected {expected}"}, 400)


def _http_error(request: Request, exc: HTTPException) -> ORJSONResponse:
    message = f"{exc.detail}: {request.method} {request.url.path[:200]} is not served here; expected {ENDPOINTS}"
    if exc.status_code not in (404, 405):
        message = str(exc.detail)
    return ORJSONResponse({"error": message}, exc.status_code, headers=getattr(exc, "headers", None))


def install(app: FastAPI, max_batch: int, max_body_bytes: int) -> None:
    """Add the guard and the handlers to kserve's app (`kserve.model_server.app`) before the server starts."""
    app.add_middleware(RequestGuard, max_batch=max_batch, max_body_bytes=max_body_bytes)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
