// The upload page: pick or drop a photo, preview it, POST it to /predict, show the top classes.
// A held-out upload ({"holdout": true, "id", "classes"}) asks the user for the class first (POST /labels),
// then shows the prediction; a prediction with a feedback_id offers "Wrong?" (POST /feedback).
"use strict";

const form = document.getElementById("upload-form");
const input = document.getElementById("file-input");
const dropZone = document.getElementById("drop-zone");
const preview = document.getElementById("preview");
const hint = document.getElementById("drop-hint");
const submit = document.getElementById("submit");
const statusLine = document.getElementById("status");
const errorBox = document.getElementById("error");
const result = document.getElementById("result");
const holdout = document.getElementById("holdout");
const verdict = document.getElementById("verdict");
const feedback = document.getElementById("feedback");
const feedbackClasses = document.getElementById("feedback-classes");

let selected = null;
let previewUrl = null;

function choose(file) {
  selected = file || null;
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = null;
  result.hidden = true;
  holdout.hidden = true;
  showError("");
  if (!selected) {
    preview.hidden = true;
    hint.hidden = false;
    submit.disabled = true;
    return;
  }
  // Preview only what the browser can show; the server still decides whether the bytes are an image.
  if (selected.type.startsWith("image/")) {
    previewUrl = URL.createObjectURL(selected);
    preview.src = previewUrl;
    preview.alt = "Preview of " + selected.name;
    preview.hidden = false;
    hint.hidden = true;
  } else {
    preview.hidden = true;
    hint.hidden = false;
  }
  statusLine.textContent = selected.name + " (" + formatBytes(selected.size) + ")";
  submit.disabled = false;
}

function formatBytes(n) {
  if (n < 1024) return n + " B";
  if (n < 1024 * 1024) return (n / 1024).toFixed(0) + " KB";
  return (n / 1024 / 1024).toFixed(1) + " MB";
}

function showError(message) {
  errorBox.textContent = message;
  errorBox.hidden = !message;
}

function showResult(body, roundTripMs) {
  // top_k: [{"label": str, "probability": 0..1}, ...], most probable first.
  const top = (body.top_k || [{ label: body.prediction, probability: body.probability }]).slice(0, 3);
  document.getElementById("prediction").textContent = body.prediction;
  const list = document.getElementById("top-k");
  list.replaceChildren();
  for (const { label: name, probability } of top) {
    const percent = Math.max(0, Math.min(100, probability * 100));
    const li = document.createElement("li");
    li.className = "bar-row";
    const label = document.createElement("span");
    label.className = "bar-label";
    label.textContent = name;
    const meter = document.createElement("span");
    meter.className = "bar";
    meter.setAttribute("role", "meter");
    meter.setAttribute("aria-label", name);
    meter.setAttribute("aria-valuemin", "0");
    meter.setAttribute("aria-valuemax", "100");
    meter.setAttribute("aria-valuenow", percent.toFixed(1));
    const fill = document.createElement("span");
    fill.className = "bar-fill";
    fill.style.width = percent.toFixed(1) + "%";
    meter.append(fill);
    const value = document.createElement("span");
    value.className = "bar-value";
    value.textContent = percent.toFixed(1) + " %";
    li.append(label, meter, value);
    list.append(li);
  }
  document.getElementById("inference-ms").textContent =
    typeof body.inference_ms === "number" ? body.inference_ms.toFixed(1) + " ms" : "n/a";
  document.getElementById("round-trip-ms").textContent = roundTripMs.toFixed(0) + " ms";
  document.getElementById("model-name").textContent = body.model || "n/a";
  verdict.hidden = true;
  feedback.hidden = !body.feedback_id;
  feedbackClasses.hidden = true;
  document.getElementById("wrong").disabled = false;
  feedback.dataset.id = body.feedback_id || "";
  result.hidden = false;
}

// POST a small JSON body; the answer's JSON, or an Error carrying the server's reason.
async function postJson(path, payload) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(payload),
  });
  const { body, reason } = await readAnswer(response);
  if (reason !== null) throw new Error("HTTP " + response.status + ": " + reason);
  return body;
}

// The JSON body of an answer (null when it has none) and, for a refusal, the server's reason.
async function readAnswer(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const reason = response.ok ? null : body && body.error ? body.error : response.statusText || "no reason given";
  return { body, reason };
}

function classButtons(container, classes, onPick) {
  container.replaceChildren();
  for (const name of classes) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "class-choice";
    button.textContent = name;
    button.addEventListener("click", () => onPick(name, container));
    container.append(button);
  }
}

function askForLabel(body) {
  classButtons(document.getElementById("holdout-classes"), body.classes, async (name, container) => {
    for (const button of container.children) button.disabled = true;
    showError("");
    try {
      const answer = await postJson("/labels", { id: body.id, label: name });
      holdout.hidden = true;
      showResult({ ...answer, inference_ms: null }, lastRoundTrip);
      verdict.textContent = answer.correct
        ? "You said " + answer.label + ": the model agreed."
        : "You said " + answer.label + "; the model said " + answer.prediction + ".";
      verdict.hidden = false;
    } catch (err) {
      showError("Your label was not recorded (" + err.message + ")");
      for (const button of container.children) button.disabled = false;
    }
  });
  holdout.hidden = false;
}

function offerCorrection() {
  const id = feedback.dataset.id;
  document.getElementById("wrong").disabled = true;
  const send = async (label) => {
    try {
      await postJson("/feedback", { id, label });
      feedbackClasses.hidden = true;
      verdict.textContent = "Thanks: your feedback was recorded.";
      verdict.hidden = false;
    } catch (err) {
      showError("Your feedback was not recorded (" + err.message + ")");
    }
  };
  const classes = Array.from(document.querySelectorAll("#top-k .bar-label"), (e) => e.textContent);
  classButtons(feedbackClasses, knownClasses.length ? knownClasses : classes, (name) => send(name));
  const unsure = document.createElement("button");
  unsure.type = "button";
  unsure.className = "class-choice";
  unsure.textContent = "Don't know";
  unsure.addEventListener("click", () => send(null));
  feedbackClasses.append(unsure);
  feedbackClasses.hidden = false;
}

let lastRoundTrip = 0;
let knownClasses = [];
fetch("/version")
  .then((response) => response.json())
  .then((version) => { knownClasses = (version.model && version.model.classes) || []; })
  .catch(() => {});

async function classify(event) {
  event.preventDefault();
  if (!selected) return;
  const data = new FormData();
  data.append("file", selected, selected.name);
  submit.disabled = true;
  showError("");
  result.hidden = true;
  holdout.hidden = true;
  statusLine.textContent = "Classifying " + selected.name + "…";
  const started = performance.now();
  try {
    const response = await fetch("/predict", { method: "POST", body: data });
    const elapsed = performance.now() - started;
    const { body, reason } = await readAnswer(response);
    if (reason !== null) {
      statusLine.textContent = selected.name + " (" + formatBytes(selected.size) + ")";
      showError("The server refused this file (HTTP " + response.status + "): " + reason);
      return;
    }
    statusLine.textContent = "";
    lastRoundTrip = elapsed;
    if (body.holdout) askForLabel(body);
    else showResult(body, elapsed);
  } catch (err) {
    statusLine.textContent = "";
    showError("Could not reach the server: " + err.message);
  } finally {
    submit.disabled = !selected;
  }
}

input.addEventListener("change", () => choose(input.files[0]));
document.getElementById("wrong").addEventListener("click", offerCorrection);
form.addEventListener("submit", classify);

for (const name of ["dragenter", "dragover"]) {
  dropZone.addEventListener(name, (event) => {
    event.preventDefault();
    dropZone.classList.add("dragging");
  });
}
for (const name of ["dragleave", "drop"]) {
  dropZone.addEventListener(name, () => dropZone.classList.remove("dragging"));
}
dropZone.addEventListener("drop", (event) => {
  event.preventDefault();
  const file = event.dataTransfer.files[0];
  if (file) choose(file);
});
