"""metrics_buffer with Seldon's real SeldonMetrics (its multiprocessing manager included)."""

import threading
import time

import metrics_buffer
import pytest
from metrics_buffer import WorkerMetricsBuffer
from seldon_core.metrics import SeldonMetrics


def counter(value: int, digit: str) -> dict:
    return {"type": "COUNTER", "key": "mnist_predictions_total", "value": value, "tags": {"class": digit}}


def gauge(value: int, version: str) -> dict:
    return {"type": "GAUGE", "key": "mnist_model_version_info", "value": value, "tags": {"served_version": version}}


def exported(store: SeldonMetrics) -> dict[tuple, float]:
    """What /metrics would show: (name, sorted labels we set, method) -> value, over every worker."""
    values = {}
    for family in store.collect():
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k in ("class", "served_version")))
            values[(sample.name, labels, sample.labels["method"])] = sample.value
    return values


@pytest.fixture
def store():
    """A SeldonMetrics with its own manager process, as seldon-core-microservice creates one."""
    store = SeldonMetrics()
    yield store
    store._manager.shutdown()


@pytest.fixture
def unbuffered_update():
    """Seldon's own update, whether or not metrics_buffer is installed in this process."""
    return getattr(SeldonMetrics.update, "unbuffered", SeldonMetrics.update)


def test_counters_add_up_and_gauges_keep_the_last_value(store, unbuffered_update):
    buffer = WorkerMetricsBuffer(lambda metrics, method: unbuffered_update(store, metrics, method))
    buffer.add([counter(2, "3"), gauge(1, "v1")], "predict")
    buffer.add([counter(1, "3"), counter(4, "7")], "predict")
    buffer.add([gauge(0, "v1"), gauge(1, "v2")], "predict")
    buffer.add([gauge(1, "v2")], "health")
    assert exported(store) == {}, "nothing reaches Seldon's store before a flush"

    buffer.flush()
    counters = "mnist_predictions_total"
    assert exported(store) == {
        (counters, (("class", "3"),), "predict"): 3,
        (counters, (("class", "7"),), "predict"): 4,
        ("mnist_model_version_info", (("served_version", "v1"),), "predict"): 0,
        ("mnist_model_version_info", (("served_version", "v2"),), "predict"): 1,
        ("mnist_model_version_info", (("served_version", "v2"),), "health"): 1,
    }

    buffer.add([counter(5, "3")], "predict")
    buffer.flush()
    buffer.flush()  # an empty flush changes nothing
    assert exported(store)[(counters, (("class", "3"),), "predict")] == 8


def test_concurrent_requests_lose_no_count(store, unbuffered_update):
    buffer = WorkerMetricsBuffer(lambda metrics, method: unbuffered_update(store, metrics, method))

    def requests():
        for _ in range(500):
            buffer.add([counter(1, "1")], "predict")

    threads = [threading.Thread(target=requests) for _ in range(4)]
    for thread in threads:
        thread.start()
    for _ in range(20):
        buffer.flush()
    for thread in threads:
        thread.join()
    buffer.flush()
    assert exported(store)[("mnist_predictions_total", (("class", "1"),), "predict")] == 2000


@pytest.fixture
def fresh_install(monkeypatch, unbuffered_update):
    """Seldon's own update in place, so the test's install() is the one that counts; put back afterwards."""
    monkeypatch.setattr(SeldonMetrics, "update", unbuffered_update)


def wait_for(store, key: tuple, timeout: float) -> dict:
    """What the store exports once it holds `key`, or after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    values = exported(store)
    while key not in values and time.monotonic() < deadline:
        time.sleep(0.05)
        values = exported(store)
    return values


def test_installed_update_buffers_and_a_thread_flushes(fresh_install, store):
    assert not getattr(SeldonMetrics.update, "buffered", False)
    assert metrics_buffer.install(interval_s=0.2)
    assert SeldonMetrics.update.buffered
    installed = SeldonMetrics.update
    assert metrics_buffer.install(interval_s=0.2), "installing twice is harmless"
    assert SeldonMetrics.update is installed
    store.update([counter(1, "4"), gauge(1, "v1")], "predict")
    store.update([counter(1, "4")], "predict")
    store.update([], "predict")
    # A TIMER becomes a histogram in Seldon's store: it is not buffered.
    store.update([{"type": "TIMER", "key": "mnist_decode_ms", "value": 2.0}], "predict")
    assert {name for name, *_ in exported(store)} == {
        "mnist_decode_ms_bucket",
        "mnist_decode_ms_count",
        "mnist_decode_ms_sum",
    }

    values = wait_for(store, ("mnist_predictions_total", (("class", "4"),), "predict"), timeout=5)
    assert values[("mnist_predictions_total", (("class", "4"),), "predict")] == 2
    assert values[("mnist_model_version_info", (("served_version", "v1"),), "predict")] == 1


def test_the_flush_interval_is_the_one_installed(fresh_install, store):
    # A minute: with any shorter interval (the default of 1 s included) the count would arrive.
    assert metrics_buffer.install(interval_s=60)
    store.update([counter(3, "5")], "predict")
    key = ("mnist_predictions_total", (("class", "5"),), "predict")
    assert key not in wait_for(store, key, timeout=2.5), "flushed before the installed interval"


def test_an_update_with_nothing_to_record_does_not_touch_the_store(fresh_install, store, unbuffered_update):
    assert metrics_buffer.install()
    store._manager.shutdown()  # any round trip to the manager now raises
    with pytest.raises((OSError, EOFError)):
        unbuffered_update(store, [], "predict")
    store.update([], "predict")
