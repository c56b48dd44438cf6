"use strict";
const $ = (id) => document.getElementById(id);
let models = {};
let chosen = null;

async function loadModels() {
  const response = await fetch("/v1/models");
  const body = await response.json();
  for (const m of body.models) {
    models[m.name] = m;
    const option = new Option(`${m.name} (${m.kind.replace("MODEL_KIND_", "").toLowerCase()}${m.ready ? "" : ", not ready"})`, m.name);
    option.disabled = !m.ready || m.kind === "MODEL_KIND_UNSPECIFIED";
    $("model").add(option);
  }
}

function choose(file) {
  chosen = file;
  $("drop").firstChild.textContent = `${file.name} (${Math.round(file.size / 1024)} KiB) `;
  run();
}

function cell(row, text) { row.insertCell().textContent = text; }

async function run() {
  $("error").textContent = "";
  if (!chosen) { $("error").textContent = "Choose an image first."; return; }
  const name = $("model").value;
  const verb = models[name].kind === "MODEL_KIND_DETECTION" ? "detect" : "classify";
  const query = new URLSearchParams({ annotate: "true", min_score: $("min-score").value });
  const response = await fetch(`/v1/models/${encodeURIComponent(name)}:${verb}?${query}`, {
    method: "POST", body: chosen, headers: { "Content-Type": chosen.type || "application/octet-stream" },
  });
  const body = await response.json();
  if (!response.ok) { $("error").textContent = `${body.error.code}: ${body.error.message}`; return; }
  const image = body.annotated_image;
  $("result-image").src = `data:${image.mime_type};base64,${image.data}`;
  $("result-image").hidden = false;
  const rows = $("results").tBodies[0];
  rows.replaceChildren();
  for (const item of body.classifications || body.detections || []) {
    const row = rows.insertRow();
    cell(row, item.label);
    cell(row, item.class_id);
    cell(row, item.score.toFixed(4));
    const b = item.pixel_box;
    cell(row, b ? [b.xmin, b.ymin, b.xmax, b.ymax].map((v) => v.toFixed(0)).join(", ") : "");
  }
  $("results").hidden = false;
  $("summary").textContent = `${body.model.name} v${body.model.version}, image ${body.image_size.width}x${body.image_size.height}`;
  const t = body.timings;
  $("timings").textContent = `decode ${t.decode_ms.toFixed(1)} ms · preprocess ${t.preprocess_ms.toFixed(1)} ms · ` +
    `TF Serving ${t.upstream_ms.toFixed(1)} ms · postprocess ${t.postprocess_ms.toFixed(1)} ms · total ${t.total_ms.toFixed(1)} ms`;
}

$("file").addEventListener("change", (e) => { if (e.target.files.length) choose(e.target.files[0]); });
$("drop").addEventListener("dragover", (e) => { e.preventDefault(); $("drop").classList.add("over"); });
$("drop").addEventListener("dragleave", () => $("drop").classList.remove("over"));
$("drop").addEventListener("drop", (e) => {
  e.preventDefault(); $("drop").classList.remove("over");
  if (e.dataTransfer.files.length) choose(e.dataTransfer.files[0]);
});
$("form").addEventListener("submit", (e) => { e.preventDefault(); run(); });
$("model").addEventListener("change", () => { if (chosen) run(); });
loadModels().catch((e) => { $("error").textContent = `Could not list models: ${e}`; });
