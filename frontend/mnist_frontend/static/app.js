// The drawing pad: pointer strokes on a black canvas, predictions from POST /api/predict, a bar chart.
"use strict";

(() => {
  const canvas = document.getElementById("digit-canvas");
  const ctx = canvas.getContext("2d");
  const predictionEl = document.getElementById("prediction");
  const errorEl = document.getElementById("error");
  const versionEl = document.getElementById("model-version");
  const latencyEl = document.getElementById("latency");
  const trueLabelLine = document.getElementById("true-label-line");
  const trueLabelEl = document.getElementById("true-label");
  const randomButton = document.getElementById("random-digit");
  const bars = Array.from(document.querySelectorAll("#chart [data-digit]"));

  // About the stroke of a pen on MNIST's 28x28 grid once the digit is scaled to its 20x20 box.
  const LINE_WIDTH = canvas.width / 14;

  let drawing = false;
  let last = null;
  let hasInk = false;
  let shownDigitImage = null; // the PNG data URL of a random MNIST digit on the canvas, sent as it is
  let requestSeq = 0; // only the newest request may update the page

  function resetCanvas() {
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.strokeStyle = "#fff";
    ctx.fillStyle = "#fff";
    ctx.lineWidth = LINE_WIDTH;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    hasInk = false;
    shownDigitImage = null;
    trueLabelLine.hidden = true;
    trueLabelEl.textContent = "";
  }

  function canvasPoint(event) {
    const box = canvas.getBoundingClientRect();
    return {
      x: ((event.clientX - box.left) * canvas.width) / box.width,
      y: ((event.clientY - box.top) * canvas.height) / box.height,
    };
  }

  function dot(point) {
    ctx.beginPath();
    ctx.arc(point.x, point.y, LINE_WIDTH / 2, 0, 2 * Math.PI);
    ctx.fill();
  }

  function lineTo(point) {
    ctx.beginPath();
    ctx.moveTo(last.x, last.y);
    ctx.lineTo(point.x, point.y);
    ctx.stroke();
    last = point;
  }

  function formatPercent(p) {
    const percent = Math.round(p * 100);
    return percent === 0 && p > 0 ? "<1%" : `${percent}%`;
  }

  function setBars(probabilities, top) {
    bars.forEach((bar, digit) => {
      const p = probabilities ? probabilities[digit] : 0;
      bar.dataset.probability = String(p);
      bar.querySelector(".bar-fill").style.height = `${(p * 100).toFixed(1)}%`;
      bar.querySelector(".bar-value").textContent = formatPercent(p);
      bar.classList.toggle("top", digit === top);
    });
  }

  function resetResult() {
    setBars(null, -1);
    predictionEl.textContent = "";
    versionEl.textContent = "–";
    latencyEl.textContent = "–";
  }

  function showError(message) {
    errorEl.textContent = message;
    errorEl.hidden = false;
  }

  function clearError() {
    errorEl.textContent = "";
    errorEl.hidden = true;
  }

  function showPrediction(result, milliseconds) {
    clearError();
    setBars(result.probabilities, result.prediction);
    predictionEl.textContent = String(result.prediction);
    versionEl.textContent = result.model_version;
    latencyEl.textContent = `${Math.round(milliseconds)} ms`;
  }

  async function predict(image) {
    if (!hasInk) {
      showError("Draw a digit first.");
      return;
    }
    const seq = ++requestSeq;
    const started = performance.now();
    let response;
    let body = null;
    try {
      response = await fetch("/api/predict", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ image }),
      });
      body = await response.json().catch(() => null);
    } catch (err) {
      if (seq === requestSeq) {
        resetResult();
        showError(`Cannot reach the frontend server: ${err.message}`);
      }
      return;
    }
    if (seq !== requestSeq) {
      return;
    }
    if (!response.ok || !body || !Array.isArray(body.probabilities)) {
      resetResult();
      showError(body && body.error ? body.error : `The server answered HTTP ${response.status}.`);
      return;
    }
    showPrediction(body, performance.now() - started);
  }

  function predictCanvas() {
    predict(shownDigitImage || canvas.toDataURL("image/png"));
  }

  async function showRandomDigit() {
    let body = null;
    try {
      const response = await fetch("/api/random-digit");
      body = await response.json().catch(() => null);
      if (!response.ok || !body || typeof body.image !== "string") {
        throw new Error(body && body.error ? body.error : `HTTP ${response.status}`);
      }
    } catch (err) {
      showError(`No random digit: ${err.message}`);
      return;
    }
    const image = new Image();
    image.onload = () => {
      resetCanvas();
      ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
      hasInk = true;
      shownDigitImage = body.image;
      trueLabelEl.textContent = String(body.label);
      trueLabelLine.hidden = false;
      predict(body.image);
    };
    image.src = body.image;
  }

  canvas.addEventListener("pointerdown", (event) => {
    if (event.pointerType === "mouse" && event.button !== 0) {
      return;
    }
    event.preventDefault();
    if (shownDigitImage) {
      resetCanvas();
    }
    canvas.setPointerCapture(event.pointerId);
    drawing = true;
    last = canvasPoint(event);
    dot(last);
    hasInk = true;
  });

  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) {
      return;
    }
    const coalesced = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
    for (const e of coalesced.length ? coalesced : [event]) {
      lineTo(canvasPoint(e));
    }
  });

  canvas.addEventListener("pointerup", () => {
    if (drawing) {
      drawing = false;
      predictCanvas();
    }
  });

  canvas.addEventListener("pointercancel", () => {
    drawing = false;
  });

  document.getElementById("predict").addEventListener("click", predictCanvas);

  document.getElementById("clear").addEventListener("click", () => {
    requestSeq++;
    resetCanvas();
    resetResult();
    clearError();
  });

  if (randomButton) {
    randomButton.addEventListener("click", showRandomDigit);
  }

  resetCanvas();
})();
