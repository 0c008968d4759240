"""Reading Seldon's answers (the HTTP failure paths are in test_frontend_views.py, over real HTTP)."""

import json

import pytest
from scripted_seldon import MODEL_VERSION, PROBABILITIES, seldon_answer

from mnist_frontend.seldon import Prediction, SeldonError, parse_prediction


def test_tensor_answer():
    prediction = parse_prediction(json.dumps(seldon_answer()).encode())
    assert prediction == Prediction(PROBABILITIES, MODEL_VERSION)
    assert prediction.digit == 7


@pytest.mark.parametrize("ndarray", [[PROBABILITIES], PROBABILITIES])
def test_ndarray_answer(ndarray):
    answer = {"data": {"ndarray": ndarray}, "meta": {"tags": {"model_version": "v1"}}}
    assert parse_prediction(json.dumps(answer).encode()) == Prediction(PROBABILITIES, "v1")


def test_missing_version_is_unknown():
    answer = {"data": {"tensor": {"shape": [1, 10], "values": PROBABILITIES}}}
    assert parse_prediction(json.dumps(answer).encode()).model_version == "unknown"


@pytest.mark.parametrize(
    "answer",
    [
        b"",
        b"[]",
        b'{"data": null}',
        b'{"data": {"ndarray": []}}',
        b'{"data": {"ndarray": [["a", "b"]]}}',
        b'{"data": {"tensor": {"values": [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, NaN]}}}',
        b'{"data": {"tensor": {"values": [-0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]}}}',
        b'{"data": {"strData": "7"}}',
    ],
)
def test_answers_that_are_not_predictions(answer):
    with pytest.raises(SeldonError) as error:
        parse_prediction(answer)
    assert error.value.status == 502
