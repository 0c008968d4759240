"""The real microservice follows LATEST: not ready before the first model, new versions swapped in under load."""

import threading
import time

import pytest
import requests
from model_fixtures import publish, publish_corrupt, random_state_dict
from seldon_server import SeldonServer

pytestmark = pytest.mark.slow

SWITCH_BOUND_S = 5.0
POLL_INTERVAL_S = 0.5
BODY = {"data": {"ndarray": [[0.5] * 784]}}


def wait_until(condition, timeout: float) -> float:
    """Poll `condition` until it is true; return the seconds it took, or fail after `timeout`."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not true after {timeout}s")
        time.sleep(0.05)
    return time.monotonic() - start


def test_not_ready_until_the_first_model_is_published(model_root):
    with SeldonServer(model_root, workers=2, grpc_workers=0, poll_interval_s=POLL_INTERVAL_S) as server:
        health = server.health()
        assert health.status_code == 503
        assert "no model published yet" in health.json()["status"]["info"]
        prediction = server.predict(BODY)
        assert prediction.status_code == 503
        assert "waiting for the trainer" in prediction.json()["status"]["info"]

        version = publish(model_root, random_state_dict(seed=1))
        wait_until(lambda: server.health().status_code == 200, timeout=SWITCH_BOUND_S)
        # Both workers must have loaded it: every answer is now a prediction from that version.
        for _ in range(10):
            response = server.predict(BODY)
            assert response.status_code == 200
            assert response.json()["meta"]["tags"]["model_version"] == version


class Load:
    """Client threads posting predictions back to back, recording (time, status, served version)."""

    def __init__(self, url: str, clients: int = 4):
        self.url = url
        self.results: list[tuple[float, int, str | None]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client) for _ in range(clients)]

    def _client(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                try:
                    response = session.post(self.url, json=BODY, timeout=10)
                    version = response.json()["meta"]["tags"]["model_version"] if response.ok else None
                    self.results.append((time.monotonic(), response.status_code, version))
                except (requests.RequestException, ValueError):
                    self.results.append((time.monotonic(), 0, None))

    def served_since(self, since: float) -> set[str | None]:
        return {version for at, _, version in self.results if at >= since}

    def __enter__(self) -> "Load":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def test_new_version_is_served_under_load_without_a_failed_request(model_root):
    first = publish(model_root, random_state_dict(seed=1))
    with SeldonServer(model_root, workers=2, threads=2, grpc_workers=0, poll_interval_s=POLL_INTERVAL_S) as server:
        wait_until(lambda: server.health().status_code == 200, timeout=SWITCH_BOUND_S)
        with Load(server.predictions_url) as load:
            time.sleep(1.0)
            published_at = time.monotonic()
            second = publish(model_root, random_state_dict(seed=2))
            took = wait_until(lambda: load.served_since(time.monotonic() - 1.0) == {second}, timeout=SWITCH_BOUND_S)
            # A version that fails verification is ignored: the server keeps serving the last good one.
            corrupt = publish_corrupt(model_root, random_state_dict(seed=3))
            time.sleep(3 * POLL_INTERVAL_S + 0.5)
            after_corrupt = time.monotonic()
            time.sleep(0.5)

        failures = [result for result in load.results if result[1] != 200]
        assert not failures, f"{len(failures)} of {len(load.results)} requests failed: {failures[:5]}"
        assert len(load.results) > 50
        assert load.served_since(0) == {first, second}
        assert first not in load.served_since(published_at + took), "an old version came back after the switch"
        assert corrupt not in load.served_since(0)
        assert load.served_since(after_corrupt) == {second}
        assert server.health().json()["jsonData"]["model_version"] == second
