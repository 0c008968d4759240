"""Fixtures for the model server: published models, the class in-process, the real microservice."""

import pytest
from kserve_server import KServeServer
from model_fixtures import publish, train_small_model
from seldon_server import SeldonServer

from MnistClassifier import MnistClassifier


@pytest.fixture(scope="session")
def trained_state_dict() -> dict:
    """The real model trained on synthetic digits (a few seconds), so that answers can be checked."""
    state_dict, accuracy = train_small_model()
    assert accuracy > 0.85, f"the quickly trained model reached only {accuracy:.0%}"
    return state_dict


@pytest.fixture
def model_root(tmp_path):
    """An empty model root, as on the volume before the first training run."""
    root = tmp_path / "models" / "mnist"
    root.mkdir(parents=True)
    return root


@pytest.fixture
def published_root(model_root, trained_state_dict):
    """A model root with one published version of the trained model."""
    publish(model_root, trained_state_dict)
    return model_root


@pytest.fixture
def classifier(published_root):
    """MnistClassifier loaded in this process, as Seldon does in a worker; the watcher is driven by the test."""
    model = MnistClassifier(model_root=str(published_root), poll_interval_s=3600)
    model.load()
    return model


@pytest.fixture(scope="module")
def served_root(tmp_path_factory, trained_state_dict):
    """A model root shared by one module's server, with one published version of the trained model."""
    root = tmp_path_factory.mktemp("served") / "mnist"
    publish(root, trained_state_dict)
    return root


@pytest.fixture(scope="module")
def server(served_root):
    """One real microservice (2 gunicorn workers, gRPC on) for a whole test module."""
    with SeldonServer(served_root, workers=2, grpc_workers=1) as running:
        yield running


@pytest.fixture(scope="module")
def kserve(served_root):
    """One real KServe ModelServer with the model `mnist` for a whole test module."""
    with KServeServer(served_root) as running:
        yield running
