// Train tab: the form is built from /api/schema (the pydantic config schema), never from a list kept here.
import { t } from "./i18n.js";
import { $, api, drawLossChart, duration, el, fmt, toast } from "./util.js";

const LONG_TEXT = new Set(["model.system_prompt", "model.chat_template"]);
let fields = [];
let lastState = null;
let pollTimer = null;
let formRestored = false;  // the job's settings are put in the form once per page load
let defaultRunDir = "";

function yamlOf(value) {
  if (value === null || value === undefined) return "";
  if (Array.isArray(value)) return value.map((v) => `- ${typeof v === "object" ? JSON.stringify(v) : v}`).join("\n");
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

function inputFor(field, info) {
  const id = `opt-${field.key}`;
  const common = { id, name: field.key, "data-key": field.key };
  if (field.widget === "select") {
    const options = (field.nullable ? [el("option", { value: "", text: "—" })] : [])
      .concat(field.choices.map((c) => el("option", { value: c, text: c })));
    const select = el("select", common, ...options);
    select.value = field.default ?? "";
    return select;
  }
  if (field.widget === "checkbox") return el("input", { ...common, type: "checkbox", checked: !!field.default });
  if (field.widget === "integer" || field.widget === "number") {
    const b = field.bounds;
    return el("input", { ...common, type: "number", step: field.widget === "integer" ? "1" : "any",
      min: b.minimum ?? b.exclusiveMinimum, max: b.maximum ?? b.exclusiveMaximum,
      value: field.default ?? "", placeholder: field.nullable ? "—" : "" });
  }
  if (field.widget === "yaml" || LONG_TEXT.has(field.key)) {
    return el("textarea", { ...common, rows: field.key === "data.datasets" ? 3 : 2, spellcheck: "false",
      placeholder: field.key === "data.datasets" ? "- my_data.json" : "" }, yamlOf(field.default));
  }
  const input = el("input", { ...common, type: "text", value: field.default ?? "" });
  if (field.key === "model.name_or_path") {
    input.setAttribute("list", "model-choices");
    input.placeholder = info.builtin_models[0];
  }
  if (field.key === "output.dir") input.value = info.default_run_dir;
  return input;
}

function readValue(field) {
  const input = document.getElementById(`opt-${field.key}`);
  if (field.widget === "checkbox") return input.checked;
  const raw = input.value;
  if (field.widget === "integer" || field.widget === "number") {
    // A number field holding text ("1e", "abc") reads as "": sent as is, the server names the field,
    // instead of the option silently falling back to its default.
    if (input.validity && input.validity.badInput) return "(not a number)";
    return raw === "" ? null : Number(raw);
  }
  if (field.widget === "yaml") return raw;
  return raw === "" ? null : raw;
}

export function formValues() {
  const values = {};
  for (const field of fields) values[field.key] = readValue(field);
  return values;
}

// Each "form: key: problem" line goes next to its field (the server names nested values too:
// data.datasets.0.repeat belongs to data.datasets); the first marked field is scrolled to and
// focused, since #form-errors sits below the fold. Lines naming no field stay in #form-errors.
function showErrors(message) {
  document.querySelectorAll(".opt.invalid").forEach((o) => { o.classList.remove("invalid"); o.querySelector(".err")?.remove(); });
  const general = [];
  let first = null;
  for (const line of (message || "").split("\n").filter(Boolean)) {
    const match = line.match(/^form: ([\w.]+): (.*)$/);
    const key = match && fields.find((f) => match[1] === f.key || match[1].startsWith(f.key + "."))?.key;
    const row = key && document.querySelector(`.opt[data-key="${key}"]`);
    if (!row) { general.push(line); continue; }
    const where = match[1].slice(key.length + 1);  // "0.repeat" of data.datasets.0.repeat
    row.classList.add("invalid");
    row.append(el("div", { class: "err", text: where ? `${where}: ${match[2]}` : match[2] }));
    if (row.classList.contains("advanced")) $("#show-advanced").checked = true, $("#train-form").classList.add("show-all");
    first = first || row;
  }
  $("#form-errors").textContent = general.join("\n");
  if (first) {
    first.scrollIntoView({ block: "center" });
    document.getElementById(`opt-${first.dataset.key}`)?.focus({ preventScroll: true });
  }
}

export async function initTrain(shared) {
  const info = shared.info;
  const sections = await api("api/schema");
  const form = $("#train-form");
  fields = sections.flatMap((s) => s.fields);
  for (const section of sections) {
    const fieldset = el("fieldset", {}, el("legend", { "data-section": section.name, text: t(`section.${section.name}`) }));
    for (const field of section.fields) {
      fieldset.append(el("div", { class: `opt ${field.essential ? "" : "advanced"}`, "data-key": field.key },
        el("label", { for: `opt-${field.key}`, text: field.name, title: field.key }),
        inputFor(field, info),
        el("div", { class: "help", text: field.description })));
    }
    if (!section.fields.some((f) => f.essential)) fieldset.classList.add("advanced-section");
    form.append(fieldset);
  }
  // Built-in model first, then the base models of earlier runs; any folder path or hub id can be typed.
  $("#model-choices").replaceChildren(...info.builtin_models.concat(info.recent_models || [])
    .map((m) => el("option", { value: m })));
  $("#show-advanced").addEventListener("change", (e) => form.classList.toggle("show-all", e.target.checked));
  form.addEventListener("submit", (e) => e.preventDefault());

  defaultRunDir = info.default_run_dir;
  shared.formValues = formValues;
  shared.formModel = () => $("#opt-model\\.name_or_path").value || info.builtin_models[0];
  shared.setDataset = (path) => { $("#opt-data\\.datasets").value = `- ${path}`; };

  $("#train-yaml").addEventListener("click", async () => {
    try {
      const result = await api("api/config/validate", { json: formValues() });
      showErrors("");
      const view = $("#yaml-view");
      view.textContent = result.yaml;
      view.classList.toggle("hidden");
    } catch (err) { showErrors(err.message); }
  });

  $("#train-start").addEventListener("click", async () => {
    try {
      const started = await api("api/train/start", { json: formValues() });
      showErrors("");
      showYamlLink(started.yaml_name);
      toast(`${t("train.started")}: ${started.run_dir}`);
      poll();
    } catch (err) { showErrors(err.message); toast(err.message.split("\n")[0], true); }
  });
  $("#train-stop").addEventListener("click", async () => { await api("api/train/stop", { method: "POST" }); poll(); });
  document.addEventListener("languagechange", () => {
    document.querySelectorAll("legend[data-section]").forEach((l) => { l.textContent = t(`section.${l.dataset.section}`); });
    poll();
  });
  poll();
}

function showYamlLink(name) {
  const link = $("#train-download");
  link.href = `api/configs/${encodeURIComponent(name)}`;
  link.setAttribute("download", name);
  link.classList.remove("hidden");
}

// A page opened (or reloaded) shows the settings of the job running or last run, not the defaults
// (with a fresh output.dir once that job is over: its folder holds a run already; a stopped run keeps
// its folder, where Start resumes it).
function restoreForm(status) {
  if (formRestored || !status.form) return;
  formRestored = true;
  for (const field of fields) {
    const input = document.getElementById(`opt-${field.key}`);
    const value = status.form[field.key];
    if (!input) continue;
    if (field.widget === "checkbox") input.checked = !!value;
    else if (field.widget === "yaml" || input.tagName === "TEXTAREA") input.value = yamlOf(value);
    else input.value = value ?? "";
  }
  if (status.yaml_name) showYamlLink(status.yaml_name);
  if (!jobActive(status.state) && status.state !== "stopped") $("#opt-output\\.dir").value = defaultRunDir;
}

async function poll() {
  clearTimeout(pollTimer);
  let status;
  try { status = await api("api/train/status"); } catch { pollTimer = setTimeout(poll, 3000); return; }
  restoreForm(status);
  render(status);
  pollTimer = setTimeout(poll, status.state === "running" || status.state === "stopping" ? 1000 : 4000);
}

function jobActive(state) { return state === "running" || state === "stopping"; }

function render(status) {
  const state = status.state;
  const badge = $("#train-state");
  badge.className = `badge ${state}`;
  badge.textContent = t(`state.${state}`);
  $("#train-start").disabled = state === "running" || state === "stopping";
  $("#train-stop").disabled = state !== "running";
  const progress = status.progress;
  const fraction = progress ? progress.step / Math.max(progress.total, 1) : state === "completed" ? 1 : 0;
  $("#train-bar").style.width = `${(fraction * 100).toFixed(1)}%`;
  $("#train-steps").textContent = progress ? `${t("train.step")} ${progress.step} / ${progress.total} (${Math.round(fraction * 100)}%)`
    : state === "running" ? t("train.preparing") : "–";
  $("#train-elapsed").textContent = status.elapsed ? duration(status.elapsed) : "";
  $("#train-run").textContent = status.target ? status.command : "";
  const metrics = status.metrics || [];
  drawLossChart($("#train-chart"), metrics, t("train.no_points"));
  const losses = metrics.filter((m) => typeof m.loss === "number");
  $("#train-last-loss").textContent = losses.length ? `loss ${fmt(losses[losses.length - 1].loss)}` : "";
  const log = $("#train-log");
  const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
  if (log.textContent !== (status.log || "")) {
    log.textContent = status.log || "";
    if (atBottom) log.scrollTop = log.scrollHeight;
  }
  if (jobActive(lastState) && !jobActive(state)) jobEnded(status);
  lastState = state;
}

// A run just ended (seen by this page): say how, refresh the run lists, and offer a fresh output folder,
// except after a stop: that run is resumable, and Start with the same settings, folder included, resumes it.
function jobEnded(status) {
  const state = status.state;
  if (state === "completed") toast(t("train.done"));
  else if (state === "stopped") toast(t("train.stopped"));
  else toast(`${t(`state.${state}`)}: ${(status.log || "").trim().split("\n").slice(-1)[0] || ""}`, state === "failed");
  if (state !== "stopped") api("api/info").then((info) => { $("#opt-output\\.dir").value = info.default_run_dir; });
  document.dispatchEvent(new CustomEvent("runschanged"));
}
