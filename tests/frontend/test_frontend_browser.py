"""The page in headless Chromium, against the app under gunicorn and a real seldon-core-microservice.

The model is trained at the start of this module on generated digits (tests/support/synthetic_mnist.py)
with the real trainer, and served from its model root by the real MnistClassifier. Screenshots go to
pytest's tmp dir, and to $ARTIFACTS_DIR/frontend/ when ARTIFACTS_DIR is set.
"""

import json
import os
import re
import shutil
import statistics
import subprocess
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright
from support.processes import REPO, Server, component_env, free_port, venv_bin, wait_for_http

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LATENCY_SAMPLES = 20
# A prediction that takes a second from the end of a stroke to the bars is stuck somewhere, not slow.
HANG_BOUND_MS = 1000

# Strokes in canvas fractions (0..1, from the top left); every stroke end asks for a prediction.
ONE = [[(0.5, 0.15), (0.5, 0.85)]]
SEVEN = [[(0.25, 0.2), (0.75, 0.2), (0.42, 0.85)]]
FOUR = [[(0.3, 0.15), (0.25, 0.55), (0.75, 0.55)], [(0.6, 0.3), (0.6, 0.85)]]


def run(argv: list[str], env: dict[str, str], timeout: float) -> None:
    """Run a command to completion; fail the test with its output if it fails."""
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"{' '.join(argv)} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory) -> Path:
    """Generated digits in MNIST's IDX format, train and t10k splits."""
    out = tmp_path_factory.mktemp("mnist")
    script = str(REPO / "tests" / "support" / "synthetic_mnist.py")
    run([venv_bin("trainer"), script, str(out), "--train", "400", "--test", "100"], component_env("trainer"), 120)
    return out


@pytest.fixture(scope="module")
def model_root(mnist_dir, tmp_path_factory) -> Path:
    """A model version published by the real trainer (a few quick epochs: the page test needs a model, not accuracy)."""
    work = tmp_path_factory.mktemp("training")
    argv = [venv_bin("trainer"), "-m", "mnist_ddp", "--data-dir", str(mnist_dir)]
    argv += ["--model-root", str(work / "models"), "--checkpoint-dir", str(work / "checkpoints")]
    argv += ["--epochs", "3", "--batch-size", "32", "--log-interval", "0"]
    run(argv, component_env("trainer"), 240)
    return work / "models"


@pytest.fixture(scope="module")
def model_server(model_root, tmp_path_factory):
    """seldon-core-microservice serving MnistClassifier from `model_root`; yields (server, predictions URL)."""
    http_port = free_port()
    parameters = [{"name": "model_root", "value": str(model_root), "type": "STRING"}]
    argv = [venv_bin("serving", "seldon-core-microservice"), "MnistClassifier", "--service-type", "MODEL"]
    argv += ["--http-port", str(http_port), "--grpc-port", str(free_port()), "--metrics-port", str(free_port())]
    env = component_env("serving", PREDICTIVE_UNIT_PARAMETERS=json.dumps(parameters))
    with Server(argv, env=env, cwd=tmp_path_factory.mktemp("serving")) as server:
        wait_for_http(f"http://127.0.0.1:{http_port}/health/status", timeout=120, proc=server.proc)
        yield server, f"http://127.0.0.1:{http_port}"


@pytest.fixture(scope="module")
def frontend_url(model_server, mnist_dir, tmp_path_factory) -> str:
    """The app under gunicorn with the image's configuration, talking to the model server."""
    _, seldon_base = model_server
    port = free_port()
    argv = [venv_bin("frontend", "gunicorn"), "--config", "python:mnist_frontend.gunicorn_config"]
    argv += ["--bind", f"127.0.0.1:{port}", "mnist_frontend:create_app()"]
    env = component_env(
        "frontend",
        FRONTEND_SELDON_URL=f"{seldon_base}/api/v1.0/predictions",
        FRONTEND_SELDON_TIMEOUT="5",
        FRONTEND_DATA_DIR=str(mnist_dir),
    )
    with Server(argv, env=env, cwd=tmp_path_factory.mktemp("frontend")) as server:
        url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{url}/readyz", timeout=60, proc=server.proc)
        yield url


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)"
        # CI installs it (.ci/run), so there a missing browser fails; elsewhere the rest of `make test` still runs.
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class PageWatch:
    """What a page did that it must not: uncaught errors, console errors, requests to other origins."""

    def __init__(self, page, origin: str):
        self.problems: list[str] = []
        page.on("pageerror", lambda exc: self.problems.append(f"uncaught: {exc}"))
        page.on("console", self._console)
        page.on("request", lambda req: None if req.url.startswith((origin, "data:")) else self._outside(req.url))

    def _console(self, message) -> None:
        # Chromium logs every 4xx/5xx answer of fetch(); the outage test causes those on purpose.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.problems.append(f"console: {message.text}")

    def _outside(self, url: str) -> None:
        self.problems.append(f"request to another origin: {url}")


def open_page(browser, url: str, **context_options):
    """A new page on `url` in its own context, with a PageWatch; returns (page, watch)."""
    context = browser.new_context(**context_options)
    page = context.new_page()
    page.set_default_timeout(15_000)
    watch = PageWatch(page, url)
    page.goto(url)
    page.wait_for_load_state("load")
    return page, watch


@pytest.fixture
def page(browser, frontend_url):
    page, watch = open_page(browser, frontend_url, viewport={"width": 1000, "height": 760}, has_touch=True)
    yield page
    page.context.close()
    assert watch.problems == []


def draw(page, strokes, steps: int = 6) -> None:
    """Draw `strokes` on #digit-canvas with the mouse."""
    box = page.locator("#digit-canvas").bounding_box()
    for stroke in strokes:
        points = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in stroke]
        page.mouse.move(*points[0])
        page.mouse.down()
        for point in points[1:]:
            page.mouse.move(*point, steps=steps)
        page.mouse.up()


def bars(page) -> list[tuple[int, float, bool]]:
    """(digit, data-probability, highlighted) of every bar, in page order."""
    return page.eval_on_selector_all(
        "[data-digit]",
        "els => els.map(e => [Number(e.dataset.digit), Number(e.dataset.probability), e.classList.contains('top')])",
    )


def assert_shows_a_prediction(page) -> int:
    """Ten bars whose probabilities sum to 1, the top one highlighted and named in #prediction."""
    expect(page.locator("#prediction")).to_have_text(re.compile(r"^[0-9]$"))
    # Read in one evaluation: an answer arriving between two reads would pair an old digit with new bars.
    predicted, shown = page.evaluate(
        """() => [document.querySelector('#prediction').textContent,
                  [...document.querySelectorAll('[data-digit]')].map(
                      e => [Number(e.dataset.digit), Number(e.dataset.probability), e.classList.contains('top')])]"""
    )
    assert [digit for digit, _, _ in shown] == list(range(10))
    probabilities = [p for _, p, _ in shown]
    assert all(0.0 <= p <= 1.0 for p in probabilities)
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-3)
    top = max(range(10), key=probabilities.__getitem__)
    assert predicted == str(top)
    assert [digit for digit, _, highlighted in shown if highlighted] == [top]
    assert page.text_content("#error") == ""
    assert page.is_hidden("#error")
    return top


def canvas_ink(page) -> int:
    """How many canvas pixels are not black."""
    return page.evaluate(
        """() => {
            const c = document.querySelector('#digit-canvas');
            const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let ink = 0;
            for (let i = 0; i < data.length; i += 4) if (data[i] > 0) ink++;
            return ink;
        }"""
    )


def keep_screenshot(page, tmp_path: Path, name: str) -> Path:
    """Save a screenshot in tmp_path, and in $ARTIFACTS_DIR/frontend when set."""
    path = tmp_path / name
    page.screenshot(path=path, full_page=True)
    if os.environ.get("ARTIFACTS_DIR"):
        target = Path(os.environ["ARTIFACTS_DIR"]) / "frontend"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target / name)
    return path


def test_drawing_shows_the_probabilities_of_each_digit(page, model_root, tmp_path):
    draw(page, SEVEN)
    assert_shows_a_prediction(page)
    assert page.text_content("#model-version") == (model_root / "LATEST").read_text().strip()
    assert re.fullmatch(r"\d+ ms", page.text_content("#latency"))
    keep_screenshot(page, tmp_path, "prediction-desktop.png")


def test_clear_resets_canvas_bars_and_prediction(page):
    draw(page, FOUR)
    assert_shows_a_prediction(page)
    assert canvas_ink(page) > 0
    page.click("#clear")
    assert canvas_ink(page) == 0
    assert [p for _, p, _ in bars(page)] == [0.0] * 10
    assert [top for _, _, top in bars(page) if top] == []
    assert page.text_content("#prediction") == ""


def test_predict_button(page):
    page.click("#predict")
    assert page.text_content("#error") == "Draw a digit first."
    draw(page, ONE)
    assert_shows_a_prediction(page)
    with page.expect_response("**/api/predict") as answer:
        page.click("#predict")
    assert answer.value.status == 200
    assert_shows_a_prediction(page)


def test_touch_and_pen_strokes_draw_and_predict(page):
    box = page.locator("#digit-canvas").bounding_box()
    x = box["x"] + box["width"] / 2
    ys = [box["y"] + box["height"] * f for f in (0.2, 0.4, 0.6, 0.8)]
    cdp = page.context.new_cdp_session(page)

    with page.expect_response("**/api/predict") as touch_answer:
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": ys[0]}]})
        for y in ys[1:]:
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    assert touch_answer.value.status == 200
    assert_shows_a_prediction(page)
    assert canvas_ink(page) > 0

    page.click("#clear")
    pen = {"button": "left", "pointerType": "pen", "clickCount": 1}
    with page.expect_response("**/api/predict") as pen_answer:
        cdp.send("Input.dispatchMouseEvent", {"type": "mousePressed", "x": x, "y": ys[0], **pen})
        for y in ys[1:]:
            cdp.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y, "buttons": 1, **pen})
        cdp.send("Input.dispatchMouseEvent", {"type": "mouseReleased", "x": x, "y": ys[-1], **pen})
    assert pen_answer.value.status == 200
    assert_shows_a_prediction(page)
    assert canvas_ink(page) > 0


def test_random_test_digit_shows_its_true_label(page):
    button = page.locator("#random-digit")
    assert button.text_content() == "Random test digit"
    for _ in range(3):
        page.click("#clear")
        button.click()
        assert_shows_a_prediction(page)
        assert re.fullmatch(r"[0-9]", page.text_content("#true-label"))
        assert page.is_visible("#true-label")
        assert canvas_ink(page) > 0
    with page.expect_response("**/api/predict"):
        draw(page, ONE)
    assert page.is_hidden("#true-label-line")
    assert_shows_a_prediction(page)


def test_page_fits_a_phone_screen(browser, frontend_url, tmp_path):
    page, watch = open_page(
        browser, frontend_url, viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True
    )
    try:
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        for selector in ("#digit-canvas", "#predict", "#clear", "#random-digit", "[data-digit='9']"):
            box = page.locator(selector).bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= 360, selector
        canvas = page.locator("#digit-canvas").bounding_box()
        assert canvas["width"] == pytest.approx(canvas["height"], abs=1)
        assert canvas["width"] >= 250
        page.click("#random-digit")
        assert_shows_a_prediction(page)
        keep_screenshot(page, tmp_path, "prediction-phone.png")
    finally:
        page.context.close()
    assert watch.problems == []


# Resolves with the milliseconds from the end of the next stroke (the pointerup event's time) to the
# moment the bars carry the new probabilities.
MEASURE_NEXT_PREDICTION = """() => {
  window.barsLatency = new Promise((resolve) => {
    const canvas = document.querySelector('#digit-canvas');
    let strokeEnd = null;
    canvas.addEventListener('pointerup', (event) => { strokeEnd = event.timeStamp; }, { once: true });
    const observer = new MutationObserver(() => {
      if (strokeEnd !== null) {
        observer.disconnect();
        resolve(performance.now() - strokeEnd);
      }
    });
    observer.observe(document.querySelector('#chart'),
                     { attributes: true, attributeFilter: ['data-probability'], subtree: true });
  });
}"""


def test_draw_to_bars_latency(page, capsys):
    samples = []
    for i in range(LATENCY_SAMPLES):
        page.click("#clear")
        page.evaluate(MEASURE_NEXT_PREDICTION)
        draw(page, (SEVEN, ONE)[i % 2])
        samples.append(page.evaluate("window.barsLatency"))
        assert_shows_a_prediction(page)
    p50 = statistics.median(samples)
    p95 = statistics.quantiles(samples, n=20, method="inclusive")[-1]
    figure = f"draw-end-to-bars latency over {len(samples)} predictions: p50 {p50:.1f} ms, p95 {p95:.1f} ms"
    with capsys.disabled():
        print(f"\n{figure} (target p95 <= 100 ms locally)")
    if os.environ.get("ARTIFACTS_DIR"):
        target = Path(os.environ["ARTIFACTS_DIR"]) / "frontend"
        target.mkdir(parents=True, exist_ok=True)
        (target / "latency.json").write_text(json.dumps({"samples_ms": samples, "p50_ms": p50, "p95_ms": p95}))
    # Far above the target, which is a benchmark figure on a busy machine: this bound catches a hang.
    assert p95 < HANG_BOUND_MS, figure


def test_model_server_outage_is_shown_and_survived(page, model_server, tmp_path):
    server, seldon_base = model_server
    draw(page, ONE)
    assert_shows_a_prediction(page)

    server.stop()
    try:
        page.click("#clear")
        draw(page, SEVEN)
        expect(page.locator("#error")).to_contain_text("cannot reach the model server")
        assert page.is_visible("#error")
        assert [p for _, p, _ in bars(page)] == [0.0] * 10
        assert page.text_content("#prediction") == ""
        keep_screenshot(page, tmp_path, "model-server-down.png")
    finally:
        server.start()
        wait_for_http(f"{seldon_base}/health/status", timeout=120, proc=server.proc)

    page.click("#predict")
    assert_shows_a_prediction(page)
