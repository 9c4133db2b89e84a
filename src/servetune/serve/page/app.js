// The upload page: pick or drop a photo, preview it, POST it to /predict, show the top classes.
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

let selected = null;
let previewUrl = null;

function choose(file) {
  selected = file || null;
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = null;
  result.hidden = true;
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
  result.hidden = false;
}

async function classify(event) {
  event.preventDefault();
  if (!selected) return;
  const data = new FormData();
  data.append("file", selected, selected.name);
  submit.disabled = true;
  showError("");
  result.hidden = true;
  statusLine.textContent = "Classifying " + selected.name + "…";
  const started = performance.now();
  try {
    const response = await fetch("/predict", { method: "POST", body: data });
    const elapsed = performance.now() - started;
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (!response.ok) {
      const reason = body && body.error ? body.error : response.statusText || "no reason given";
      statusLine.textContent = selected.name + " (" + formatBytes(selected.size) + ")";
      showError("The server refused this file (HTTP " + response.status + "): " + reason);
      return;
    }
    statusLine.textContent = "";
    showResult(body, elapsed);
  } catch (err) {
    statusLine.textContent = "";
    showError("Could not reach the server: " + err.message);
  } finally {
    submit.disabled = !selected;
  }
}

input.addEventListener("change", () => choose(input.files[0]));
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
