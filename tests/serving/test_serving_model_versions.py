"""The model watcher's error paths: a LATEST that names no version, a surprise in its thread, a rejected version."""

import logging
import threading
import time

import pytest
from http_errors import RequestError
from model_fixtures import publish, publish_corrupt, random_state_dict
from model_versions import ModelWatcher

from mnist_ddp import model_store
from MnistClassifier import MnistClassifier

REJECTED = "ignoring model version"


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not true after {timeout} s"
        time.sleep(0.02)


def test_a_latest_naming_no_version_is_a_503_that_says_so(model_root):
    (model_root / model_store.LATEST).write_text("garbage\n")
    classifier = MnistClassifier(model_root=str(model_root), poll_interval_s=3600)
    classifier.load()
    with pytest.raises(RequestError) as info:
        classifier.health_status()
    assert info.value.status_code == 503
    assert str(info.value) == (
        f"no model to serve yet: {model_root / model_store.LATEST} names 'garbage', which is not a version name"
    )


def test_a_latest_naming_no_version_leaves_the_served_version_serving(model_root):
    version = publish(model_root, random_state_dict(seed=1))
    watcher = ModelWatcher(model_root, poll_interval=3600)
    assert watcher.check()
    (model_root / model_store.LATEST).write_text("../elsewhere\n")
    assert not watcher.check()
    assert watcher.current.version == version


def test_the_watcher_thread_survives_an_exception(model_root, monkeypatch, caplog):
    first = publish(model_root, random_state_dict(seed=1))
    watcher = ModelWatcher(model_root, poll_interval=0.05)
    watcher.start()
    assert watcher.current.version == first
    read_latest = model_store.read_latest
    failures = []

    def fails_twice(root):
        if len(failures) < 2:
            failures.append(threading.current_thread().name)
            raise RuntimeError("the volume went away")
        return read_latest(root)

    with caplog.at_level(logging.ERROR, logger="model_versions"):
        monkeypatch.setattr(model_store, "read_latest", fails_twice)
        wait_until(lambda: len(failures) == 2)
        second = publish(model_root, random_state_dict(seed=2))
        wait_until(lambda: watcher.current.version == second)
    assert failures == ["model-watcher", "model-watcher"]
    logged = [r for r in caplog.records if r.getMessage() == "checking for a new model version failed"]
    assert len(logged) == 2 and all(r.exc_info[0] is RuntimeError for r in logged)


def test_a_rejected_version_is_never_loaded_again(model_root, caplog):
    good = publish(model_root, random_state_dict(seed=1))
    watcher = ModelWatcher(model_root, poll_interval=3600)
    assert watcher.check()
    corrupt = publish_corrupt(model_root, random_state_dict(seed=2))
    with caplog.at_level(logging.ERROR, logger="model_versions"):
        for _ in range(5):
            assert not watcher.check()
    rejections = [r.getMessage() for r in caplog.records if r.getMessage().startswith(REJECTED)]
    assert len(rejections) == 1, rejections
    assert f"{REJECTED} {corrupt} (still serving {good})" in rejections[0]
    assert watcher.current.version == good
    # A rejected version does not block the next one.
    third = publish(model_root, random_state_dict(seed=3))
    assert watcher.check()
    assert watcher.current.version == third


def test_a_rejected_first_version_keeps_the_server_unready_with_the_reason(model_root, caplog):
    corrupt = publish_corrupt(model_root, random_state_dict(seed=2))
    watcher = ModelWatcher(model_root, poll_interval=3600)
    with caplog.at_level(logging.ERROR, logger="model_versions"):
        for _ in range(3):
            assert not watcher.check()
    assert len([r for r in caplog.records if r.getMessage().startswith(REJECTED)]) == 1
    assert watcher.current is None
    assert watcher.problem.startswith(f"the published version {corrupt} failed verification: ")
    assert "does not match metadata.json" in watcher.problem
