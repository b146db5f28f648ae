// The page at /: choose or drop X-rays, see each one's answer and heatmap, or why it was refused.
// Plain JavaScript, no build step, nothing from another host. The API key, when the service asks
// for one, lives only in this page's memory (never in storage).
"use strict";

const ACCEPTED_TYPES = ["image/jpeg", "image/png", "application/dicom"];
const state = { apiKey: "" };

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function percent(p) {
  return (100 * p).toFixed(1) + " %";
}

async function showModel() {
  const line = document.getElementById("model-line");
  try {
    const response = await fetch("/model");
    const model = await response.json();
    line.textContent = `Model ${model.name} ${model.version} · threshold ${model.threshold.toFixed(3)} · ` +
      `running on ${model.execution_provider.replace("ExecutionProvider", "")}`;
    document.getElementById("key-row").hidden = !model.api_key_required;
  } catch (error) {
    line.textContent = "The model's details could not be read: " + error;
  }
}

function addNumber(list, name, value) {
  list.append(element("dt", "", name), element("dd", "", value));
}

function showAnswer(card, answer) {
  card.querySelector(".status").textContent = answer.warning ? "Scored, with a warning" : "Scored";
  const label = card.querySelector(".label");
  label.textContent = answer.label === "pneumonia" ? "Pneumonia" : "Normal";
  label.classList.add(answer.label);
  const numbers = card.querySelector(".numbers");
  addNumber(numbers, "pneumonia", percent(answer.probabilities.pneumonia));
  addNumber(numbers, "normal", percent(answer.probabilities.normal));
  addNumber(numbers, "threshold", `pneumonia from ${percent(answer.threshold)}`);
  if (answer.pneumonia_type) {
    const types = answer.pneumonia_type.probabilities;
    addNumber(numbers, "if pneumonia", `bacterial ${percent(types.bacterial)} · viral ${percent(types.viral)}`);
  }
  addNumber(numbers, "model", `${answer.model.name} ${answer.model.version}`);
  addNumber(numbers, "image", `${answer.input.format.toUpperCase()} ${answer.input.width} × ${answer.input.height}`);
  if (answer.warning) addNumber(numbers, "warning", answer.warning);

  const xray = card.querySelector(".xray");
  const overlay = card.querySelector(".overlay");
  xray.src = "data:image/png;base64," + answer.heatmap.xray_png;
  xray.alt = "The X-ray as the service read it";
  overlay.src = "data:image/png;base64," + answer.heatmap.png;
  overlay.alt = "The X-ray with the pneumonia heatmap over it";
  const toggle = card.querySelector(".toggle");
  const opacity = card.querySelector(".opacity");
  toggle.addEventListener("change", () => { overlay.hidden = !toggle.checked; opacity.disabled = !toggle.checked; });
  opacity.addEventListener("input", () => { overlay.style.opacity = String(opacity.value / 100); });
  card.querySelector(".body").hidden = false;
}

function showRefusal(card, status, body) {
  const error = (body && body.error) || { code: "http_" + status, message: "no explanation came back" };
  card.querySelector(".status").textContent = status === 422 && error.code === "not_chest_xray"
    ? "Refused: this does not look like a frontal chest X-ray" : `Refused (HTTP ${status})`;
  const box = card.querySelector(".refusal");
  box.replaceChildren(element("code", "", error.code), document.createTextNode(" " + error.message));
  box.hidden = false;
  if (status === 401) document.getElementById("key-row").hidden = false;
}

async function score(file) {
  const card = document.getElementById("result-template").content.firstElementChild.cloneNode(true);
  card.querySelector(".file-name").textContent = file.name;
  document.getElementById("results").prepend(card);
  document.getElementById("empty").hidden = true;
  const headers = { "Content-Type": ACCEPTED_TYPES.includes(file.type) ? file.type : "application/octet-stream" };
  if (state.apiKey) headers["X-API-Key"] = state.apiKey;
  try {
    const response = await fetch("/predict?heatmap=true", { method: "POST", headers, body: file });
    const body = await response.json().catch(() => null);
    if (response.ok) showAnswer(card, body);
    else showRefusal(card, response.status, body);
  } catch (error) {
    card.querySelector(".status").textContent = "The service could not be reached: " + error;
  }
}

async function scoreAll(files) {
  for (const file of files) await score(file); // one at a time: results arrive in order
}

function setUp() {
  const input = document.getElementById("files");
  const zone = document.getElementById("drop-zone");
  document.getElementById("api-key").addEventListener("input", (event) => { state.apiKey = event.target.value.trim(); });
  input.addEventListener("change", () => { scoreAll([...input.files]); input.value = ""; });
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("dragging"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    scoreAll([...event.dataTransfer.files]);
  });
  showModel();
}

document.addEventListener("DOMContentLoaded", setUp);
