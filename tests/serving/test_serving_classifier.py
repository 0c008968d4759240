"""MnistClassifier in-process, called the way Seldon calls it: input forms, readiness, versions, metrics."""

import base64
import gc
import threading

import numpy as np
import pytest
from google.protobuf import json_format
from http_errors import RequestError
from model_fixtures import draw_digit, encode, publish, publish_corrupt, random_state_dict
from seldon_core.metadata import validate_model_metadata
from seldon_core.proto import prediction_pb2
from support.synthetic_mnist import render_digits

from mnist_ddp import model_store
from MnistClassifier import CLASS_NAMES, PREDICTIONS_METRIC, VERSION_LABEL, VERSION_METRIC, MnistClassifier

# The classifier fixture serves a model trained for a few seconds on synthetic digits.
pytestmark = pytest.mark.slow


def probabilities(response: dict) -> np.ndarray:
    data = response["data"]
    assert data["names"] == CLASS_NAMES
    if "tensor" in data:
        return np.array(data["tensor"]["values"]).reshape(data["tensor"]["shape"])
    return np.array(data["ndarray"])


@pytest.fixture(scope="module")
def digits():
    images, labels = render_digits(40, seed=11)
    return images.astype(np.float32) / 255.0, labels


@pytest.mark.parametrize(
    ("shape", "form"),
    [((784,), "ndarray"), ((28, 28), "ndarray"), ((1, 28, 28), "ndarray"), ((784,), "tensor"), ((1, 28, 28), "tensor")],
)
def test_each_array_form_gives_probabilities_per_image(classifier, digits, shape, form):
    images, labels = digits
    batch = images.reshape(len(images), *shape)
    if form == "ndarray":
        body = {"data": {"ndarray": batch.tolist()}}
    else:
        body = {"data": {"tensor": {"shape": list(batch.shape), "values": batch.ravel().tolist()}}}
    response = classifier.predict_raw(body)
    assert form in response["data"]
    p = probabilities(response)
    assert p.shape == (len(images), 10)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    assert (p.argmax(axis=1) == labels).mean() >= 0.8
    assert response["meta"]["tags"]["model_version"] == classifier.tags()["model_version"]


def test_bindata_drawing_is_classified(classifier):
    correct = 0
    for digit in range(10):
        png = encode(draw_digit(digit, canvas=(500, 400), centre=(120, 300), size=90))
        response = classifier.predict_raw({"binData": base64.b64encode(png).decode()})
        p = probabilities(response)
        assert p.shape == (1, 10)
        correct += int(p.argmax() == digit)
    assert correct >= 8, f"only {correct}/10 drawn digits recognised"


def test_grpc_messages_are_answered_with_messages(classifier, digits):
    images, _ = digits
    batch = images[:4]
    requests = [
        prediction_pb2.SeldonMessage(
            data=prediction_pb2.DefaultData(tensor=prediction_pb2.Tensor(shape=[4, 784], values=batch.ravel()))
        ),
        json_format.ParseDict({"data": {"ndarray": batch.tolist()}}, prediction_pb2.SeldonMessage()),
        prediction_pb2.SeldonMessage(binData=encode(draw_digit(2, size=120))),
    ]
    for request, n in zip(requests, [4, 4, 1], strict=True):
        response = classifier.predict_raw(request)
        assert isinstance(response, prediction_pb2.SeldonMessage)
        assert list(response.data.names) == CLASS_NAMES
        assert response.meta.tags["model_version"].string_value == classifier.tags()["model_version"]
        as_json = json_format.MessageToDict(response)
        p = probabilities(as_json)
        assert p.shape == (n, 10)


def test_bad_grpc_message_raises_a_400_with_its_reason(classifier):
    with pytest.raises(RequestError, match="strData is not supported") as info:
        classifier.predict_raw(prediction_pb2.SeldonMessage(strData="seven"))
    assert info.value.status_code == 400
    # gRPC reports str(exception): it must carry the message.
    assert "expected" in str(info.value)


def test_batch_limit_is_a_parameter(published_root):
    classifier = MnistClassifier(model_root=str(published_root), poll_interval_s=3600, max_batch=2)
    classifier.load()
    assert probabilities(classifier.predict_raw({"data": {"ndarray": np.zeros((2, 784)).tolist()}})).shape == (2, 10)
    with pytest.raises(RequestError, match="batch of 3 images is too large: at most 2") as info:
        classifier.predict_raw({"data": {"ndarray": np.zeros((3, 784)).tolist()}})
    assert info.value.status_code == 400


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [({"max_batch": 0}, "max_batch"), ({"max_batch": 5000}, "max_batch"), ({"poll_interval_s": 0}, "poll_interval_s")],
)
def test_bad_parameters_fail_at_start(parameters, expected):
    with pytest.raises(ValueError, match=expected):
        MnistClassifier(**parameters)


def test_not_ready_until_a_model_is_published(model_root):
    classifier = MnistClassifier(model_root=str(model_root), poll_interval_s=3600)
    classifier.load()
    for call in (classifier.health_status, lambda: classifier.predict_raw({"data": {"ndarray": [[0.0] * 784]}})):
        with pytest.raises(RequestError, match="no model to serve yet: no model published yet") as info:
            call()
        assert info.value.status_code == 503
    assert classifier.tags() == {}
    version = publish(model_root, random_state_dict(seed=5))
    assert classifier._watcher.check()
    assert classifier.health_status() == {"status": "ok", "model_version": version}


def test_a_new_version_is_swapped_in_and_a_corrupt_one_ignored(classifier, published_root):
    first = classifier.tags()["model_version"]
    body = {"data": {"ndarray": np.full((1, 784), 0.5).tolist()}}
    before = probabilities(classifier.predict_raw(body))

    second = publish(published_root, random_state_dict(seed=7))
    assert classifier._watcher.check()
    response = classifier.predict_raw(body)
    assert response["meta"]["tags"]["model_version"] == second != first
    assert not np.allclose(probabilities(response), before), "the new weights should answer differently"

    publish_corrupt(published_root, random_state_dict(seed=8))
    assert not classifier._watcher.check()
    assert classifier.health_status()["model_version"] == second
    assert classifier.predict_raw(body)["meta"]["tags"]["model_version"] == second


def test_unknown_architecture_is_not_served(model_root):
    model_store.publish_model(model_root, random_state_dict(seed=1), {"architecture": "resnet-152"})
    classifier = MnistClassifier(model_root=str(model_root), poll_interval_s=3600)
    classifier.load()
    with pytest.raises(RequestError, match=r"failed verification.*resnet-152") as info:
        classifier.health_status()
    assert info.value.status_code == 503


def test_metrics_count_predictions_per_class_and_name_the_served_version(classifier, digits, published_root):
    images, _ = digits
    response = classifier.predict_raw({"data": {"ndarray": images[:10].tolist()}})
    predicted = probabilities(response).argmax(axis=1)
    counters = {m["tags"]["class"]: m["value"] for m in response["meta"]["metrics"] if m["key"] == PREDICTIONS_METRIC}
    expected = {str(c): int((predicted == c).sum()) for c in range(10) if (predicted == c).any()}
    assert counters == expected
    gauges = [m for m in response["meta"]["metrics"] if m["key"] == VERSION_METRIC]
    version = classifier.tags()["model_version"]
    assert gauges == [{"type": "GAUGE", "key": VERSION_METRIC, "value": 1, "tags": {VERSION_LABEL: version}}]

    new = publish(published_root, random_state_dict(seed=9))
    assert classifier._watcher.check()
    body = {"data": {"ndarray": images[:1].tolist()}}
    # Seldon calls metrics() on health checks too: only the version gauge, no counts of predictions.
    after_swap = classifier.metrics()
    assert {m["key"] for m in after_swap} == {VERSION_METRIC}
    assert {(m["tags"][VERSION_LABEL], m["value"]) for m in after_swap} == {
        (version, 0),
        (classifier.tags()["model_version"], 1),
    }
    # The old version's gauge is set back to 0 once: later reports name only the served version.
    for later in (classifier.metrics(), classifier.metrics(), classifier.predict_raw(body)["meta"]["metrics"]):
        gauges = [m for m in later if m["key"] == VERSION_METRIC]
        assert gauges == [{"type": "GAUGE", "key": VERSION_METRIC, "value": 1, "tags": {VERSION_LABEL: new}}]


def test_init_metadata_passes_seldon_validation():
    metadata = validate_model_metadata(MnistClassifier().init_metadata())
    assert metadata["custom"]["max_batch"] == "64"
    assert {i["messagetype"] for i in metadata["inputs"]} == {"ndarray", "tensor", "binData"}


def test_load_takes_what_the_worker_holds_out_of_garbage_collection(published_root):
    gc.unfreeze()
    classifier = MnistClassifier(model_root=str(published_root), poll_interval_s=3600)
    assert gc.get_freeze_count() == 0
    classifier.load()
    assert gc.get_freeze_count() > 10_000, "torch's and the model's objects are frozen after load()"


def test_constructor_does_no_work_before_the_fork(tmp_path):
    threads_before = threading.active_count()
    classifier = MnistClassifier(model_root=str(tmp_path / "does-not-exist-yet"))
    assert threading.active_count() == threads_before, "no watcher thread may start before Seldon forks"
    assert classifier.tags() == {}
    with pytest.raises(RequestError, match="load\\(\\) has not run") as info:
        classifier.health_status()
    assert info.value.status_code == 503
