"""The hostile table (hostile_cases.py) against both real servers: a 4xx that says what was expected, never a 500.

Seldon: seldon-core-microservice with MnistClassifier; KServe: the ModelServer with the
model `mnist`, over V1 and V2. After every case the server must still be ready, and
after the whole table a good request must still be answered.
"""

import pytest
import requests
from hostile_cases import CASES, PROTOCOLS

pytestmark = [pytest.mark.slow, pytest.mark.kserve]

GOOD = {
    "seldon": {"json": {"data": {"ndarray": [[0.0] * 784]}}},
    "v1": {"json": {"instances": [[0.0] * 784]}},
    "v2": {"json": {"inputs": [{"name": "images", "datatype": "FP32", "shape": [1, 784], "data": [0.0] * 784}]}},
}
RUNS = [(case, protocol) for case in CASES for protocol in PROTOCOLS if case.build(protocol) is not None]


def test_the_table_has_at_least_40_cases_each_on_both_servers():
    on_both = [case for case in CASES if case.build("seldon") and (case.build("v1") or case.build("v2"))]
    assert len(CASES) >= 40
    assert len(on_both) == len(CASES), [case.id for case in CASES if case not in on_both]


@pytest.fixture(scope="module")
def endpoints(server, kserve):
    """protocol -> (predict URL, readiness check, message from an error body)."""
    return {
        "seldon": (server.predictions_url, server.health, lambda body: body["status"]["info"]),
        "v1": (kserve.v1_url, kserve.ready, lambda body: body["error"]),
        "v2": (kserve.v2_url, kserve.ready, lambda body: body["error"]),
    }


@pytest.mark.parametrize(("case", "protocol"), RUNS, ids=[f"{case.id}-{protocol}" for case, protocol in RUNS])
def test_hostile_request_gets_a_4xx_that_says_what_was_expected(endpoints, case, protocol):
    url, ready, message_of = endpoints[protocol]
    response = requests.post(url, timeout=60, **case.build(protocol))
    assert response.status_code == case.status, response.text[:2000]
    message = message_of(response.json())
    assert "expected" in message.lower(), message
    assert case.expected_fragment(protocol) in message, message
    assert ready().status_code == 200


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_good_request_is_answered_after_the_table(endpoints, protocol):
    url, _, _ = endpoints[protocol]
    response = requests.post(url, timeout=10, **GOOD[protocol])
    assert response.status_code == 200, response.text
