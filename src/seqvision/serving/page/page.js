// The drawing page of `seqvision serve`: draw a digit, and see what the model reads, as you draw.
//
// The canvas is sent as it is (black strokes on white, a PNG data URL): the server makes it MNIST-like
// (greyscale, polarity, crop, fit, centre), so the page needs no image processing of its own.
// No outside resources: everything here talks to the server that sent the page.
"use strict";

(function () {
  // How thick a stroke is, in CSS pixels of the 280-pixel box: MNIST strokes are about a tenth of the digit's height.
  const STROKE_WIDTH = 20;
  // Ask for a prediction at most this often while drawing: a new answer every stroke segment would queue
  // requests faster than the server answers them.
  const THROTTLE_MS = 150;
  const TOP_K = 3;
  // The canvas's own coordinates: 280 units a side, however many device pixels back them.
  const SIDE = 280;

  const canvas = document.getElementById("canvas");
  const clearButton = document.getElementById("clear");
  const resultEl = document.getElementById("result");
  const predictionEl = document.getElementById("prediction");
  const probabilityEl = document.getElementById("probability");
  const statusEl = document.getElementById("status");
  const barsEl = document.getElementById("bars");
  const modelInfoEl = document.getElementById("model-info");
  const stepsEl = document.getElementById("steps");
  const chart = document.getElementById("steps-chart");
  const chartSummary = document.getElementById("steps-summary");
  // Taken from the element the HTML parser made, so that no URL needs to be written here.
  const SVG_NS = chart.namespaceURI;

  const model = { classes: null, steps: false };
  const drawing = { pointerId: null, last: null, hasInk: false };
  // The request loop: one request at a time; `dirty` says the canvas changed since the last one was sent, and
  // `generation` grows at every Clear so that an answer about a cleared drawing is dropped.
  const requests = { inFlight: false, dirty: false, timer: null, lastSent: 0, generation: 0 };

  const context = setUpCanvas();

  // ---- the canvas -----------------------------------------------------------------------------------------

  /** A crisp canvas on high-density screens: the backing store has devicePixelRatio pixels per CSS pixel. */
  function setUpCanvas() {
    const scale = Math.min(2, Math.max(1, window.devicePixelRatio || 1));
    canvas.width = canvas.height = Math.round(SIDE * scale);
    const ctx = canvas.getContext("2d");
    ctx.scale(scale, scale);
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.lineWidth = STROKE_WIDTH;
    ctx.strokeStyle = ctx.fillStyle = "#000";
    paintWhite(ctx);
    return ctx;
  }

  /** An opaque white field: a transparent PNG would leave the server guessing which side is ink. */
  function paintWhite(ctx) {
    ctx.save();
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.restore();
  }

  /** The pointer's place in the canvas's own coordinates, whatever size CSS gives the box (border excluded). */
  function pointIn(event) {
    const box = canvas.getBoundingClientRect();
    const x = event.clientX - box.left - canvas.clientLeft;
    const y = event.clientY - box.top - canvas.clientTop;
    return { x: (x * SIDE) / canvas.clientWidth, y: (y * SIDE) / canvas.clientHeight };
  }

  function dot(point) {
    context.beginPath();
    context.arc(point.x, point.y, STROKE_WIDTH / 2, 0, 2 * Math.PI);
    context.fill();
  }

  function segment(from, to) {
    context.beginPath();
    context.moveTo(from.x, from.y);
    context.lineTo(to.x, to.y);
    context.stroke();
  }

  function onPointerDown(event) {
    // One stroke at a time: a second finger, or a mouse button other than the main one, does not draw.
    if (drawing.pointerId !== null || (event.pointerType === "mouse" && event.button !== 0)) return;
    event.preventDefault();
    drawing.pointerId = event.pointerId;
    // Capture, so that a stroke leaving the box keeps drawing (clipped) and its pointerup still reaches us.
    canvas.setPointerCapture(event.pointerId);
    drawing.last = pointIn(event);
    dot(drawing.last);
    drawing.hasInk = true;
    askSoon();
  }

  function onPointerMove(event) {
    if (event.pointerId !== drawing.pointerId) return;
    event.preventDefault();
    // A fast pen reports several positions per frame; drawing them all keeps curves round.
    const events = typeof event.getCoalescedEvents === "function" ? event.getCoalescedEvents() : [];
    for (const each of events.length ? events : [event]) {
      const point = pointIn(each);
      segment(drawing.last, point);
      drawing.last = point;
    }
    askSoon();
  }

  function onPointerUp(event) {
    if (event.pointerId !== drawing.pointerId) return;
    drawing.pointerId = null;
    drawing.last = null;
    if (canvas.hasPointerCapture(event.pointerId)) canvas.releasePointerCapture(event.pointerId);
    askNow();  // the finished stroke always gets an answer, whatever the throttle skipped
  }

  function clearDrawing() {
    paintWhite(context);
    drawing.hasInk = false;
    requests.generation += 1;
    requests.dirty = false;
    clearTimeout(requests.timer);
    requests.timer = null;
    markBusy();
    showNothing("Draw a digit in the box.");
  }

  // ---- asking the server ----------------------------------------------------------------------------------

  /** While drawing: ask again when the throttle allows, and never while an answer is still on its way. */
  function askSoon() {
    requests.dirty = true;
    markBusy();
    if (requests.timer !== null || requests.inFlight) return;
    const wait = Math.max(0, requests.lastSent + THROTTLE_MS - performance.now());
    requests.timer = setTimeout(() => { requests.timer = null; send(); }, wait);
  }

  /** aria-busy on the answer while a newer one is due: assistive technology (and tests) wait for the last. */
  function markBusy() {
    const busy = requests.inFlight || requests.dirty || requests.timer !== null;
    resultEl.setAttribute("aria-busy", String(busy));
  }

  /** At the end of a stroke: ask at once (or as soon as the request in flight is answered). */
  function askNow() {
    requests.dirty = true;
    clearTimeout(requests.timer);
    requests.timer = null;
    markBusy();
    if (!requests.inFlight) send();
  }

  async function send() {
    if (!requests.dirty || requests.inFlight) return;
    requests.dirty = false;
    requests.inFlight = true;
    requests.lastSent = performance.now();
    const generation = requests.generation;
    try {
      const answer = await postDrawing(canvas.toDataURL("image/png"));
      if (generation === requests.generation) showAnswer(answer);
    } catch (error) {
      // Every failure lands here, so that none becomes an uncaught rejection.
      if (generation === requests.generation) showNothing(describeFailure(error), true);
      // A failure the page did not foresee is a bug in it: say so in the console, where a developer looks.
      if (!(error instanceof Trouble)) console.error("seqvision page:", error);
    } finally {
      requests.inFlight = false;
      if (requests.dirty) askSoon();  // the drawing changed while we waited: send the newer one
      markBusy();
    }
  }

  /** POST the picture; resolves to {kind: "prediction" | "blank", ...} or rejects with a message for people. */
  async function postDrawing(dataUrl) {
    let response;
    try {
      response = await fetch(`predict?top_k=${TOP_K}&steps=${model.steps}`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ image: dataUrl }),
      });
    } catch (networkError) {
      throw new Trouble("Cannot reach the server. Is `seqvision serve` still running?");
    }
    const body = await response.json().catch(() => ({}));
    if (response.ok) return { kind: "prediction", ...body };
    const message = typeof body.error === "string" ? body.error : `the server answered ${response.status}`;
    // A blank (or all but blank) canvas is not an error: the person has not drawn yet.
    if (response.status === 422 && /no digit|ink|blank/i.test(message)) return { kind: "blank" };
    throw new Trouble(`The server could not read the drawing: ${message}`);
  }

  /** A failure foreseen (the server is gone, or refused the picture), with a message meant for the person. */
  class Trouble extends Error {}

  function describeFailure(error) {
    return error instanceof Trouble ? error.message : "Something went wrong on this page; try again.";
  }

  // ---- showing the answer ---------------------------------------------------------------------------------

  function showAnswer(answer) {
    if (answer.kind === "blank" || !Array.isArray(answer.probabilities)) {
      showNothing(drawing.hasInk ? "Draw a digit: there is too little ink to read."
                                 : "Draw a digit in the box.");
      return;
    }
    predictionEl.textContent = answer.predicted;
    probabilityEl.textContent = `${percent(answer.probability)} sure`;
    setStatus(secondChoice(answer));
    updateBars(answer.probabilities, answer.predicted);
    if (Array.isArray(answer.steps) && answer.steps.length) drawSteps(answer.steps, answer.predicted);
  }

  /** The runner-up, when it is worth a mention: it tells which digit the drawing could also be. */
  function secondChoice(answer) {
    const second = Array.isArray(answer.top_k) ? answer.top_k[1] : null;
    if (!second || second.probability < 0.05) return "Keep drawing, or Clear to start again.";
    return `Next best: ${second.class} (${percent(second.probability)}).`;
  }

  function showNothing(message, isProblem = false) {
    predictionEl.textContent = "";
    probabilityEl.textContent = "";
    setStatus(message, isProblem);
    updateBars(null, null);
    clearSteps();
  }

  function setStatus(message, isProblem = false) {
    statusEl.textContent = message;
    statusEl.classList.toggle("problem", isProblem);
  }

  function percent(p) {
    return `${(100 * p).toFixed(p >= 0.995 || p < 0.001 ? 0 : 1)}%`;
  }

  /** One list item per class, made once: updates only move the bars, so nothing jumps while drawing. */
  function buildBars(classes) {
    barsEl.replaceChildren(...classes.map((name) => {
      const item = document.createElement("li");
      item.dataset.class = name;
      item.innerHTML = '<span class="name"></span><span class="track" aria-hidden="true"><span class="fill">' +
                       '</span></span><span class="value"></span>';
      item.querySelector(".name").textContent = name;
      item.querySelector(".value").textContent = "–";
      return item;
    }));
  }

  function updateBars(probabilities, predicted) {
    if (probabilities && barsEl.children.length !== probabilities.length) {
      // Without the class names from /model, the answer's positions name the classes.
      buildBars(model.classes && model.classes.length === probabilities.length
        ? model.classes : probabilities.map((_, i) => String(i)));
    }
    Array.from(barsEl.children).forEach((item, i) => {
      const p = probabilities ? probabilities[i] : 0;
      item.querySelector(".fill").style.width = `${(100 * p).toFixed(1)}%`;
      item.querySelector(".value").textContent = probabilities ? percent(p) : "–";
      item.classList.toggle("top", item.dataset.class === predicted);
    });
  }

  // ---- the row-by-row chart (LSTM models) -----------------------------------------------------------------

  // The chart's drawing area inside its 360 x 190 viewBox: room on the left for the axis, on the right for the label.
  const PLOT = { left: 34, right: 330, top: 12, bottom: 160 };

  function svg(name, attributes, text) {
    const element = document.createElementNS(SVG_NS, name);
    for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
    if (text !== undefined) element.textContent = text;
    return element;
  }

  function clearSteps() {
    const plot = chart.querySelector("g.plot");
    if (plot) plot.remove();
  }

  /** steps[row][class]: one polyline per class over the rows; the predicted class drawn last, on top, in blue. */
  function drawSteps(steps, predicted) {
    const rows = steps.length;
    const names = model.classes || steps[0].map((_, i) => String(i));
    const x = (row) => PLOT.left + (rows === 1 ? 0 : (row * (PLOT.right - PLOT.left)) / (rows - 1));
    const y = (p) => PLOT.bottom - p * (PLOT.bottom - PLOT.top);
    const plot = svg("g", { class: "plot" });
    drawAxes(plot, rows, x, y);
    const chosen = names.indexOf(predicted);
    const order = names.map((_, i) => i).filter((i) => i !== chosen);
    if (chosen >= 0) order.push(chosen);
    for (const c of order) {
      const points = steps.map((row, r) => `${x(r).toFixed(1)},${y(row[c]).toFixed(1)}`).join(" ");
      const line = svg("polyline", { points, class: c === chosen ? "chosen" : "other" });
      line.append(svg("title", {}, `class ${names[c]}`));
      plot.append(line);
    }
    if (chosen >= 0) labelChosen(plot, steps, chosen, names[chosen], x, y);
    clearSteps();
    chart.append(plot);
    chartSummary.textContent = summariseSteps(steps, chosen, names);
  }

  function drawAxes(plot, rows, x, y) {
    for (const p of [0, 0.5, 1]) {
      plot.append(svg("line", { class: "grid", x1: PLOT.left, x2: PLOT.right, y1: y(p), y2: y(p) }));
      plot.append(svg("text", { class: "axis-label", x: PLOT.left - 6, y: y(p) + 3, "text-anchor": "end" },
                      p === 0.5 ? "0.5" : String(p)));
    }
    // Every row's number for small pictures (8 rows); for MNIST's 28, about six ticks.
    const every = rows <= 12 ? 1 : Math.ceil(rows / 6);
    for (let r = 0; r < rows; r += 1) {
      if (r % every !== 0 && r !== rows - 1) continue;
      plot.append(svg("text", { class: "axis-label", x: x(r), y: PLOT.bottom + 14, "text-anchor": "middle" },
                      String(r + 1)));
    }
    plot.append(svg("text", { class: "axis-label", x: (PLOT.left + PLOT.right) / 2, y: PLOT.bottom + 28,
                              "text-anchor": "middle" }, "rows read (top to bottom)"));
  }

  function labelChosen(plot, steps, chosen, name, x, y) {
    const rows = steps.length;
    if (rows <= 12) {
      steps.forEach((row, r) => plot.append(svg("circle", { class: "chosen-dot", cx: x(r), cy: y(row[chosen]), r: 3 })));
    }
    // The class's name just right of the line's end, where the eye arrives.
    const last = steps[rows - 1][chosen];
    plot.append(svg("text", { class: "chosen-label", x: x(rows - 1) + 7, y: y(last) + 4 }, name));
  }

  /** For screen readers: from which row on the predicted class led to the end. */
  function summariseSteps(steps, chosen, names) {
    if (chosen < 0) return "Class probabilities after each row";
    let from = steps.length;
    while (from > 0 && argmax(steps[from - 1]) === chosen) from -= 1;
    const name = names[chosen];
    return from === steps.length
      ? `Class probabilities after each row; ${name} leads only at the end`
      : `Class probabilities after each row; ${name} leads from row ${from + 1} of ${steps.length}`;
  }

  function argmax(values) {
    return values.reduce((best, v, i) => (v > values[best] ? i : best), 0);
  }

  // ---- the model ------------------------------------------------------------------------------------------

  /** Name the model in the header, make one bar per class, and learn whether row-by-row answers exist. */
  async function loadModel() {
    try {
      const response = await fetch("model");
      if (!response.ok) throw new Error(`the server answered ${response.status}`);
      const info = await response.json();
      model.classes = Array.isArray(info.classes) ? info.classes.map(String) : null;
      model.steps = info.steps === true;
      describeModel(info);
      if (model.classes) buildBars(model.classes);
      stepsEl.hidden = !model.steps;
      if (!drawing.hasInk) setStatus("Draw a digit in the box.");
    } catch (error) {
      modelInfoEl.textContent = "The model's description could not be loaded.";
      setStatus("Cannot reach the server. Is `seqvision serve` still running?", true);
    }
  }

  function describeModel(info) {
    const parts = [];
    const accuracy = info.test_metrics && info.test_metrics.test_accuracy;
    modelInfoEl.replaceChildren();
    const name = document.createElement("strong");
    name.textContent = String(info.model || "model");
    parts.push(`trained on ${info.dataset || "?"}`);
    if (typeof accuracy === "number") parts.push(`test accuracy ${(100 * accuracy).toFixed(1)}%`);
    if (Array.isArray(info.image_shape)) parts.push(`reads ${info.image_shape.join("×")} pictures`);
    modelInfoEl.append(name, ` ${parts.join(" · ")}`);
  }

  canvas.addEventListener("pointerdown", onPointerDown);
  canvas.addEventListener("pointermove", onPointerMove);
  canvas.addEventListener("pointerup", onPointerUp);
  canvas.addEventListener("pointercancel", onPointerUp);
  // A long press on touch screens would otherwise open the "save image" menu instead of drawing.
  canvas.addEventListener("contextmenu", (event) => event.preventDefault());
  clearButton.addEventListener("click", clearDrawing);
  loadModel();
})();
