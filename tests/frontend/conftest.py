"""Fixtures for the frontend: the app and its test client, with Seldon played by `ScriptedSeldon`.

The app's call to Seldon goes over real HTTP to a server on 127.0.0.1 that answers, fails
or hangs as each test tells it to.
"""

import pytest
from scripted_seldon import ScriptedSeldon, digit_png
from support.processes import free_port

from mnist_frontend import create_app
from mnist_frontend.images import data_url


@pytest.fixture
def seldon():
    server = ScriptedSeldon()
    yield server
    server.close()


@pytest.fixture
def app(seldon):
    return create_app({"TESTING": True, "SELDON_URL": seldon.url, "SELDON_TIMEOUT": 0.5, "DATA_DIR": None})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def drawing() -> str:
    """A drawing as the page sends it: a PNG data URL."""
    return data_url(digit_png())


@pytest.fixture
def closed_url() -> str:
    """A predictions URL on a local port where nothing listens."""
    return f"http://127.0.0.1:{free_port()}/api/v1.0/predictions"
