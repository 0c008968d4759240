"""Configuration: defaults, then FRONTEND_* environment variables, then test overrides, then validation."""

import os
from urllib.parse import urlsplit

ENV_PREFIX = "FRONTEND"
MODEL_PROTOCOLS = ("seldon", "v2")

DEFAULTS = {
    # The SeldonDeployment's predictor Service (executor port 8000) in the same namespace.
    "SELDON_URL": "http://mnist-classifier-default:8000/api/v1.0/predictions",
    "SELDON_TIMEOUT": 5.0,
    # How SELDON_URL is spoken to: "seldon" (Seldon Core v1, binData) or "v2" (KServe's Open Inference
    # Protocol, a BYTES tensor; SELDON_URL is then .../v2/models/<name>/infer).
    "MODEL_PROTOCOL": "seldon",
    "DATA_DIR": None,
    # A 280x280 canvas PNG is 5-30 KB; a megabyte leaves room for any phone's drawing.
    "MAX_CONTENT_LENGTH": 1024 * 1024,
}


class SettingsError(ValueError):
    """A setting has a value the app cannot run with; the message names the environment variable."""


def validate(config) -> None:
    """Check and normalise the settings in a Flask `config` in place; raise SettingsError on a bad value."""
    url = config["SELDON_URL"]
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"{ENV_PREFIX}_SELDON_URL must be an http(s) URL, got {url!r}")

    protocol = config["MODEL_PROTOCOL"]
    if protocol not in MODEL_PROTOCOLS:
        raise SettingsError(
            f"{ENV_PREFIX}_MODEL_PROTOCOL must be one of {', '.join(MODEL_PROTOCOLS)}, got {protocol!r}"
        )

    timeout = _positive(config["SELDON_TIMEOUT"], "SELDON_TIMEOUT", "a number of seconds")
    config["SELDON_TIMEOUT"] = float(timeout)
    config["MAX_CONTENT_LENGTH"] = _positive(
        config["MAX_CONTENT_LENGTH"], "MAX_CONTENT_LENGTH", "an integer number of bytes", integer=True
    )

    data_dir = config["DATA_DIR"]
    if data_dir in ("", None):
        config["DATA_DIR"] = None
    elif isinstance(data_dir, str | os.PathLike):
        config["DATA_DIR"] = os.fspath(data_dir)
    else:
        raise SettingsError(f"{ENV_PREFIX}_DATA_DIR must be a directory path, got {data_dir!r}")


def _positive(value, name: str, expected: str, integer: bool = False):
    # from_prefixed_env parses values as JSON: "5" arrives as 5, while "5s" stays a string and is refused here.
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value <= 0:
        raise SettingsError(f"{ENV_PREFIX}_{name} must be positive, {expected}; got {value!r}")
    return value
