"""The real KServe server follows LATEST: not ready before the first model, new versions swapped in under load."""

import threading
import time

import pytest
import requests
from kserve_server import KServeServer
from model_fixtures import publish, publish_corrupt, random_state_dict
from test_serving_hot_swap import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.kserve]

POLL_INTERVAL_S = 0.5
SWITCH_BOUND_S = 5.0
BODY = {"inputs": [{"name": "images", "datatype": "FP32", "shape": [1, 784], "data": [0.5] * 784}]}


def test_not_ready_until_the_first_model_is_published(model_root):
    with KServeServer(model_root, poll_interval_s=POLL_INTERVAL_S) as server:
        ready = server.ready()
        assert ready.status_code == 503
        assert "waiting for the trainer" in ready.json()["error"]
        prediction = server.infer_v2(BODY)
        assert prediction.status_code == 503
        assert "no model published yet" in prediction.json()["error"]

        version = publish(model_root, random_state_dict(seed=1))
        wait_until(lambda: server.ready().status_code == 200, timeout=SWITCH_BOUND_S)
        response = server.infer_v2(BODY)
        assert response.status_code == 200
        assert response.json()["model_version"] == version


def test_new_version_is_served_under_load_without_a_failed_request(model_root):
    first = publish(model_root, random_state_dict(seed=1))
    results: list[tuple[float, int, str | None]] = []
    stop = threading.Event()

    def client() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    response = session.post(server.v2_url, json=BODY, timeout=10)
                    version = response.json()["model_version"] if response.ok else None
                    results.append((time.monotonic(), response.status_code, version))
                except (requests.RequestException, ValueError):
                    results.append((time.monotonic(), 0, None))

    def served_since(since: float) -> set[str | None]:
        return {version for at, _, version in results if at >= since}

    with KServeServer(model_root, poll_interval_s=POLL_INTERVAL_S) as server:
        wait_until(lambda: server.ready().status_code == 200, timeout=SWITCH_BOUND_S)
        clients = [threading.Thread(target=client) for _ in range(3)]
        for thread in clients:
            thread.start()
        try:
            time.sleep(1.0)
            second = publish(model_root, random_state_dict(seed=2))
            wait_until(lambda: served_since(time.monotonic() - 1.0) == {second}, timeout=SWITCH_BOUND_S)
            corrupt = publish_corrupt(model_root, random_state_dict(seed=3))
            time.sleep(3 * POLL_INTERVAL_S + 0.5)
            after_corrupt = time.monotonic()
            time.sleep(0.5)
        finally:
            stop.set()
            for thread in clients:
                thread.join()
        metrics = server.metrics()

    failures = [result for result in results if result[1] != 200]
    assert not failures, f"{len(failures)} of {len(results)} requests failed: {failures[:5]}"
    assert served_since(0) == {first, second}
    assert corrupt not in served_since(0)
    assert served_since(after_corrupt) == {second}
    assert f'mnist_model_version_info{{served_version="{first}"}} 0.0' in metrics
    assert f'mnist_model_version_info{{served_version="{second}"}} 1.0' in metrics
