"""The call to the model server, and the mapping of each way it can fail to an HTTP status.

Two protocols, chosen by the MODEL_PROTOCOL setting:
  seldon  Seldon Core v1 REST: {"binData": "<base64 PNG/JPEG>"}. Seldon answers numbers for a
          binData request as a `tensor` ({"shape": [1, 10], "values": [...]}); `ndarray` too.
  v2      KServe's Open Inference Protocol: one BYTES tensor holding the base64 image; the answer's
          first output holds the ten probabilities, `model_version` the version.

    Seldon answers 4xx           -> 400 (the image was refused; Seldon's message is passed on)
    Seldon answers 503           -> 503 (no model loaded yet)
    connection refused, no DNS   -> 503 (model server not running, or not yet)
    no answer within the timeout -> 504
    any other failure            -> 502
"""

import base64
import json
import math
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

NUM_CLASSES = 10
# An empty ProxyHandler: the model server is an in-cluster Service, never reached through HTTP_PROXY.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class SeldonError(Exception):
    """A prediction that could not be had: `status` is the HTTP status to answer the browser with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Prediction:
    """The ten class probabilities and the model version that produced them."""

    probabilities: list[float]
    model_version: str

    @property
    def digit(self) -> int:
        """The most likely digit."""
        return max(range(NUM_CLASSES), key=self.probabilities.__getitem__)


def request_body(image: bytes, protocol: str = "seldon") -> dict:
    """The JSON body that carries PNG/JPEG bytes in `protocol` ("seldon" or "v2")."""
    encoded = base64.b64encode(image).decode("ascii")
    if protocol == "v2":
        return {"inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": [1], "data": [encoded]}]}
    return {"binData": encoded}


def predict(url: str, image: bytes, timeout: float, protocol: str = "seldon") -> Prediction:
    """Send PNG/JPEG bytes to the model server at `url` in `protocol`; raise SeldonError on any failure."""
    body = json.dumps(request_body(image, protocol)).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        answer = _send(request, url, timeout)
    except urllib.error.HTTPError as exc:
        raise _http_error(exc) from None
    return parse_v2_prediction(answer) if protocol == "v2" else parse_prediction(answer)


def check_reachable(url: str, timeout: float) -> None:
    """Return if the server behind `url` answers HTTP at all (any status); raise SeldonError if not."""
    request = urllib.request.Request(url, method="GET")
    try:
        _send(request, url, timeout)
    except urllib.error.HTTPError as exc:
        exc.close()


def _send(request: urllib.request.Request, url: str, timeout: float) -> bytes:
    """Return the response body; HTTP error statuses raise HTTPError, every other failure SeldonError."""
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return response.read()
    except urllib.error.HTTPError:
        raise
    except TimeoutError:
        raise _timeout(url, timeout) from None
    except urllib.error.URLError as exc:
        raise _connection_error(url, exc.reason, timeout) from None
    except OSError as exc:
        raise SeldonError(502, f"the model server at {_origin(url)} broke off the connection ({exc})") from None


def parse_prediction(answer: bytes) -> Prediction:
    """Read the probabilities and `meta.tags.model_version` from a Seldon response body."""
    try:
        reply = json.loads(answer)
        data = reply["data"]
        if "tensor" in data:
            values = data["tensor"]["values"]
        else:
            values = data["ndarray"]
            values = values[0] if values and isinstance(values[0], list) else values
        probabilities = [float(p) for p in values]
        tags = (reply.get("meta") or {}).get("tags") or {}
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        message = f"the model server answered something other than a prediction: {answer[:200]!r}"
        raise SeldonError(502, message) from None
    return _checked(probabilities, str(tags.get("model_version", "unknown")))


def _checked(probabilities: list[float], version: str) -> Prediction:
    if len(probabilities) != NUM_CLASSES:
        raise SeldonError(502, f"the model server answered {len(probabilities)} values, not {NUM_CLASSES}")
    if not all(math.isfinite(p) and 0.0 <= p <= 1.0 for p in probabilities):
        raise SeldonError(502, f"the model server answered values that are not probabilities: {probabilities}")
    return Prediction(probabilities, version)


def parse_v2_prediction(answer: bytes) -> Prediction:
    """Read the probabilities (the first output's data) and `model_version` from a V2 inference response."""
    try:
        reply = json.loads(answer)
        probabilities = [float(p) for p in reply["outputs"][0]["data"]]
        version = reply.get("model_version") or "unknown"
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        message = f"the model server answered something other than a prediction: {answer[:200]!r}"
        raise SeldonError(502, message) from None
    return _checked(probabilities, str(version))


def _http_error(exc: urllib.error.HTTPError) -> SeldonError:
    try:
        body = exc.read()
    except OSError:
        body = b""
    finally:
        exc.close()
    detail = _seldon_message(body)
    if exc.code == 503:
        return SeldonError(503, f"the model server is not ready: {detail}")
    if 400 <= exc.code < 500:
        return SeldonError(400, f"the model server refused the image: {detail}")
    return SeldonError(502, f"the model server failed (HTTP {exc.code}): {detail}")


def _seldon_message(body: bytes) -> str:
    # Seldon's errors look like {"status": {"info": "...", "reason": "...", ...}}, KServe's like {"error": "..."}.
    try:
        reply = json.loads(body)
        if isinstance(reply, dict) and isinstance(reply.get("error"), str):
            return reply["error"]
        status = reply["status"]
        return str(status.get("info") or status.get("reason"))
    except (ValueError, TypeError, KeyError, AttributeError):
        text = body.decode("utf-8", "replace").strip()
        return text[:200] or "no details given"


def _connection_error(url: str, reason, timeout: float) -> SeldonError:
    if isinstance(reason, TimeoutError):
        return _timeout(url, timeout)
    if isinstance(reason, ConnectionRefusedError | socket.gaierror):
        return SeldonError(503, f"cannot reach the model server at {_origin(url)} ({reason}); is it running?")
    return SeldonError(502, f"cannot talk to the model server at {_origin(url)} ({reason})")


def _timeout(url: str, timeout: float) -> SeldonError:
    return SeldonError(504, f"the model server at {_origin(url)} did not answer within {timeout:g} s")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
