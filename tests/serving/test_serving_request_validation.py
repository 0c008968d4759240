"""The request parsers in-process: every bad JSON body and gRPC message of bad_requests.py, good inputs, puid.

The same tables go to the live microservice in test_serving_microservice.py; here each row
costs microseconds, so a branch of request_validation that no row reaches shows up at once.
"""

import numpy as np
import pytest
from bad_requests import (
    BAD_JSON_BODIES,
    BAD_PROTO_MESSAGES,
    LARGE_JSON_BODIES,
    LARGE_PROTO_MESSAGES,
    b64,
    proto_ndarray,
    proto_tensor,
)
from model_fixtures import draw_digit, encode
from request_validation import InvalidInputError
from seldon_core.proto import prediction_pb2
from seldon_requests import parse_json_request, parse_proto_request

JSON_ROWS = BAD_JSON_BODIES + LARGE_JSON_BODIES
PROTO_ROWS = BAD_PROTO_MESSAGES + LARGE_PROTO_MESSAGES


@pytest.mark.parametrize(("body", "message"), [row[1:] for row in JSON_ROWS], ids=[row[0] for row in JSON_ROWS])
def test_bad_json_body_is_refused_with_what_was_expected(body, message):
    with pytest.raises(InvalidInputError) as info:
        parse_json_request(body)
    assert message in str(info.value)


@pytest.mark.parametrize(("request_message", "message"), [r[1:] for r in PROTO_ROWS], ids=[r[0] for r in PROTO_ROWS])
def test_bad_proto_message_is_refused_with_what_was_expected(request_message, message):
    with pytest.raises(InvalidInputError) as info:
        parse_proto_request(request_message)
    assert message in str(info.value)


PIXELS = np.linspace(0, 1, 784, dtype=np.float32).reshape(1, 784)


@pytest.mark.parametrize(
    ("body", "form"),
    [
        ({"data": {"ndarray": PIXELS.tolist()}}, "ndarray"),
        ({"data": {"ndarray": PIXELS.reshape(1, 28, 28).tolist()}}, "ndarray"),
        ({"data": {"names": ["pixels"], "ndarray": PIXELS.reshape(1, 1, 28, 28).tolist()}}, "ndarray"),
        ({"data": {"tensor": {"shape": [1, 784], "values": PIXELS.ravel().tolist()}}}, "tensor"),
        ({"data": {"tensor": {"shape": [1, 28, 28], "values": PIXELS.ravel().tolist()}}}, "tensor"),
    ],
    ids=["ndarray-784", "ndarray-28x28", "ndarray-1x28x28-with-names", "tensor-784", "tensor-28x28"],
)
def test_each_array_form_becomes_the_same_images(body, form):
    parsed = parse_json_request(body)
    assert parsed.form == form
    assert parsed.images.dtype == np.float32 and parsed.images.shape == (1, 1, 28, 28)
    np.testing.assert_array_equal(parsed.images.reshape(1, 784), PIXELS)


def test_proto_array_forms_become_the_same_images():
    for message, form in (
        (proto_tensor([1, 784], PIXELS.ravel()), "tensor"),
        (proto_ndarray(PIXELS.tolist()), "ndarray"),
    ):
        parsed = parse_proto_request(message)
        assert parsed.form == form
        np.testing.assert_allclose(parsed.images.reshape(1, 784), PIXELS, rtol=1e-6)


def test_bindata_becomes_one_image_answered_as_a_tensor():
    png = encode(draw_digit(3, size=80))
    for parsed in (
        parse_json_request({"binData": b64(png)}),
        parse_proto_request(prediction_pb2.SeldonMessage(binData=png)),
    ):
        assert parsed.form == "tensor"
        assert parsed.images.shape == (1, 1, 28, 28)
        assert 0.5 < parsed.images.max() <= 1.0


def test_the_batch_limit_is_the_callers():
    body = {"data": {"ndarray": np.zeros((3, 784)).tolist()}}
    assert parse_json_request(body, max_batch=3).images.shape == (3, 1, 28, 28)
    with pytest.raises(InvalidInputError, match="batch of 3 images is too large: at most 2"):
        parse_json_request(body, max_batch=2)


def test_puid_is_kept_for_the_answer():
    body = {"meta": {"puid": "req-42"}, "data": {"ndarray": PIXELS.tolist()}}
    assert parse_json_request(body).puid == "req-42"
    message = proto_tensor([1, 784], PIXELS.ravel())
    message.meta.puid = "req-43"
    assert parse_proto_request(message).puid == "req-43"


@pytest.mark.parametrize("meta", [None, {}, {"puid": 42}, {"puid": None}, "not an object"])
def test_a_missing_or_odd_puid_is_none(meta):
    body = {"data": {"ndarray": PIXELS.tolist()}}
    if meta is not None:
        body["meta"] = meta
    assert parse_json_request(body).puid is None
