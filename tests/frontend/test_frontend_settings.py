"""Configuration: defaults, then FRONTEND_* environment variables, then test overrides; bad values refused."""

import pytest

from mnist_frontend import create_app
from mnist_frontend.settings import DEFAULTS, SettingsError


@pytest.fixture(autouse=True)
def no_frontend_env(monkeypatch):
    for key in DEFAULTS:
        monkeypatch.delenv(f"FRONTEND_{key}", raising=False)


def test_defaults():
    config = create_app().config
    assert config["SELDON_URL"] == "http://mnist-classifier-default:8000/api/v1.0/predictions"
    assert config["SELDON_TIMEOUT"] == 5.0
    assert config["DATA_DIR"] is None
    assert config["MAX_CONTENT_LENGTH"] == 1024 * 1024


def test_environment_overrides_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("FRONTEND_SELDON_URL", "http://seldon.example:9000/api/v1.0/predictions")
    monkeypatch.setenv("FRONTEND_SELDON_TIMEOUT", "2.5")
    monkeypatch.setenv("FRONTEND_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FRONTEND_MAX_CONTENT_LENGTH", "65536")
    config = create_app().config
    assert config["SELDON_URL"] == "http://seldon.example:9000/api/v1.0/predictions"
    assert config["SELDON_TIMEOUT"] == 2.5
    assert config["DATA_DIR"] == str(tmp_path)
    assert config["MAX_CONTENT_LENGTH"] == 65536


def test_test_config_overrides_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FRONTEND_SELDON_TIMEOUT", "2")
    config = create_app({"SELDON_TIMEOUT": 7, "DATA_DIR": tmp_path}).config
    assert config["SELDON_TIMEOUT"] == 7.0
    assert config["DATA_DIR"] == str(tmp_path)


def test_empty_data_dir_means_none(monkeypatch):
    monkeypatch.setenv("FRONTEND_DATA_DIR", "")
    assert create_app().config["DATA_DIR"] is None


BAD_ENVIRONMENT = [
    ("FRONTEND_SELDON_URL", "mnist-classifier-default:8000", "FRONTEND_SELDON_URL must be an http(s) URL"),
    ("FRONTEND_SELDON_URL", "ftp://seldon/predict", "FRONTEND_SELDON_URL must be an http(s) URL"),
    ("FRONTEND_SELDON_URL", "http:///api", "FRONTEND_SELDON_URL must be an http(s) URL"),
    ("FRONTEND_SELDON_TIMEOUT", "5s", "FRONTEND_SELDON_TIMEOUT must be positive, a number of seconds; got '5s'"),
    ("FRONTEND_SELDON_TIMEOUT", "0", "FRONTEND_SELDON_TIMEOUT must be positive"),
    ("FRONTEND_SELDON_TIMEOUT", "true", "FRONTEND_SELDON_TIMEOUT must be positive"),
    ("FRONTEND_MAX_CONTENT_LENGTH", "1.5", "FRONTEND_MAX_CONTENT_LENGTH must be positive, an integer"),
    ("FRONTEND_MAX_CONTENT_LENGTH", "-1", "FRONTEND_MAX_CONTENT_LENGTH must be positive"),
    ("FRONTEND_DATA_DIR", "[1, 2]", "FRONTEND_DATA_DIR must be a directory path"),
]


@pytest.mark.parametrize(("name", "value", "message"), BAD_ENVIRONMENT)
def test_bad_settings_stop_the_app_with_a_clear_message(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        create_app()
