// Data tab: upload or pick a dataset, check it, preview the templated samples with trained tokens marked.
import { t } from "./i18n.js";
import { $, api, el, toast } from "./util.js";
import { showTab, onTab } from "./app.js";

const PAGE = 3;
let previewStart = 0;
let lastCheck = null;
let checking = 0;   // checks under way: a big file takes minutes
let checkSeq = 0;   // the latest check's number: only its answer is shown

// While a check runs the button says so and cannot start the same check twice; the summary says
// which file is being checked instead of the result of an earlier one (or "No dataset checked yet").
function showChecking() {
  const button = $("#data-check");
  button.disabled = checking > 0;
  button.textContent = t(checking ? "data.checking" : "data.check");
  if (!checking) return;
  const summary = $("#data-summary");
  summary.className = "empty";
  summary.textContent = `${t("data.checking")} ${$("#data-pick").value.split("/").pop()}`;
  $("#data-issues").replaceChildren();
}

export function initData(shared) {
  const pick = $("#data-pick");
  const fileInput = $("#data-file");
  const drop = $("#drop-zone");

  async function refreshFiles(selected) {
    const files = await api("api/data/files");
    pick.replaceChildren(el("option", { value: "", text: "—" }),
      ...files.map((f) => el("option", { value: f.path, text: `${f.name} (${Math.ceil(f.bytes / 1024)} KB)` })));
    if (selected) pick.value = selected;
  }

  async function upload(file) {
    try {
      const saved = await api(`api/data/upload?name=${encodeURIComponent(file.name)}`, { method: "PUT", body: file });
      toast(`${t("data.uploaded")}: ${saved.name}`);
      await refreshFiles(saved.path);
      await check();
    } catch (err) { toast(err.message, true); }
  }

  async function check() {
    const path = pick.value;
    if (!path) { toast(t("data.choose_first"), true); return; }
    const seq = ++checkSeq;  // another file picked (or uploaded) meanwhile: its check decides what shows
    checking += 1;
    showChecking();
    let result = null;
    try {
      const form = shared.formValues ? shared.formValues() : {};
      result = await api("api/data/check", { json: {
        path, format: $("#data-format").value, model: shared.formModel(),
        chat_template: form["model.chat_template"] || null, system_prompt: form["model.system_prompt"] || null,
        cutoff_len: Number(form["data.cutoff_len"]) || 1024, train_on: form["data.train_on"] || "assistant" } });
    } catch (err) {
      if (seq === checkSeq) toast(err.message, true);
    }
    checking -= 1;
    showChecking();
    if (seq !== checkSeq) return;
    if (!result) { renderCheck(); return; }  // failed: the earlier result (or none) is shown again
    lastCheck = result;
    shared.dataset = lastCheck.path;
    $("#data-use").disabled = !lastCheck.samples;
    renderCheck();
    previewStart = 0;
    $("#preview-samples").replaceChildren();
    updatePreviewPosition();
    await preview();
  }

  function renderCheck() {
    const c = lastCheck;
    if (!c) {
      $("#data-summary").className = "empty";
      $("#data-summary").textContent = t("data.none");
      return;
    }
    const stat = (value, label, cls = "") => el("div", { class: `stat ${cls}` }, el("b", { text: String(value) }), el("span", { text: label }));
    const summary = $("#data-summary");
    summary.className = "";
    summary.replaceChildren(...[
      el("div", { class: "stats" },
        stat(c.format || "?", t("data.format_found")), stat(c.records, t("data.records")),
        stat(c.samples, t("data.samples")), stat(c.issue_count, t("data.problems"))),
      c.tokens ? el("p", { class: "hint", id: "data-tokens", text:
        `${t("data.token_lengths")} (${c.tokens.model}): min ${c.tokens.min} · median ${c.tokens.median} · p95 ${c.tokens.p95} · max ${c.tokens.max}` +
        ` · ${c.tokens.truncated} ${t("data.cut_at")} ${c.tokens.cutoff}` }) : null,
      el("div", { class: `badge ${c.ok ? "ok" : "bad"}`, id: "data-verdict",
        text: c.ok ? `✓ ${t("data.ok")}` : (c.verdict || `${c.issue_count} ${t("data.problems")}`) }),
      c.issue_count ? el("p", { class: "hint", id: "data-issues-hint",
        text: t(c.skip_bad_helps ? "data.has_problems" : "data.fix_problems") }) : null].filter(Boolean));
    $("#data-issues").replaceChildren(...c.issues.map((line) => el("li", { text: line })));
  }

  function updatePreviewPosition() {
    const total = lastCheck ? lastCheck.samples : 0;
    $("#preview-pos").textContent = total ? `${Math.min(previewStart + 1, total)}–${Math.min(previewStart + PAGE, total)} / ${total}` : "";
    $("#preview-model").textContent = shared.formModel();
  }

  async function preview() {
    if (!lastCheck || !lastCheck.samples) return;
    const form = shared.formValues ? shared.formValues() : {};
    const box = $("#preview-samples");
    box.replaceChildren(el("p", { class: "muted", text: t("data.loading_model") }));
    updatePreviewPosition();
    try {
      const result = await api("api/data/preview", { json: {
        path: lastCheck.path, fmt: $("#data-format").value, model: shared.formModel(),
        chat_template: form["model.chat_template"] || null, system_prompt: form["model.system_prompt"] || null,
        cutoff_len: Number(form["data.cutoff_len"]) || 1024, train_on: form["data.train_on"] || "assistant",
        start: previewStart, count: PAGE } });
      box.replaceChildren(...result.rows.map(renderSample));
    } catch (err) {
      box.replaceChildren(el("p", { class: "errors", text: err.message }));
    }
  }

  function renderSample(row) {
    const head = el("div", { class: "sample-head" }, el("span", { title: row.where, text: `#${row.index + 1} · ${row.where.split("/").pop()}` }),
      row.error ? null : el("span", { text: `${row.tokens} ${t("data.tokens")} · ${row.trained} ${t("data.trained")}` +
        (row.truncated ? ` · ${t("data.truncated")}` : "") }));
    if (row.error) return el("div", { class: "sample" }, head, el("pre", { class: "errors", text: row.error }));
    const spans = (runs) => runs.map(([text, trained]) => el("span", { class: trained ? "tok trained" : "tok", text }));
    const pre = el("pre", {}, ...spans(row.spans));
    // Preference samples: the prompt once, then each answer (chosen / rejected, or a KTO completion).
    const answers = (row.answers || []).map((a) => el("div", { class: "answer" },
      el("div", { class: "sample-head" }, el("span", { text: a.name + (row.label === undefined ? "" : ` (${row.note})`) }),
        el("span", { text: `${a.tokens} ${t("data.tokens")} · ${a.trained} ${t("data.trained")}` + (a.truncated ? ` · ${t("data.truncated")}` : "") })),
      el("pre", {}, ...spans(a.spans))));
    return el("div", { class: "sample" }, head, pre, ...answers);
  }

  fileInput.addEventListener("change", () => fileInput.files[0] && upload(fileInput.files[0]));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault(); drop.classList.remove("over");
    if (e.dataTransfer.files[0]) upload(e.dataTransfer.files[0]);
  });
  $("#data-check").addEventListener("click", check);
  pick.addEventListener("change", () => pick.value && check());
  $("#preview-run").addEventListener("click", preview);
  $("#preview-prev").addEventListener("click", () => { previewStart = Math.max(0, previewStart - PAGE); preview(); });
  $("#preview-next").addEventListener("click", () => {
    if (lastCheck && previewStart + PAGE < lastCheck.samples) { previewStart += PAGE; preview(); }
  });
  $("#data-use").addEventListener("click", () => {
    if (!shared.dataset) return;
    shared.setDataset(shared.dataset);
    showTab("train");
  });
  document.addEventListener("languagechange", () => { renderCheck(); showChecking(); updatePreviewPosition(); });
  onTab("data", updatePreviewPosition);
  refreshFiles().catch((err) => toast(err.message, true));
}
