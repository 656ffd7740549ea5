// Runs tab (past runs, their loss and report) and Export tab (`ducktune export` as a subprocess).
import { t } from "./i18n.js";
import { $, api, drawLossChart, el, fmt, toast } from "./util.js";
import { onTab, showTab } from "./app.js";
import { loadEvaluation, renderEvaluation } from "./evaluation.js";

let runs = [];
let selected = null;
let exportTimer = null;

function sizeText(bytes) {
  const units = ["B", "KB", "MB", "GB"];
  let i = 0;
  while (bytes >= 1024 && i < units.length - 1) { bytes /= 1024; i++; }
  return `${bytes.toFixed(i ? 1 : 0)} ${units[i]}`;
}

async function refreshRuns() {
  try { runs = await api("api/runs"); } catch (err) { toast(err.message, true); return; }
  const body = $("#runs-table tbody");
  body.replaceChildren(...runs.map((r) => el("tr", { "data-run": r.name, class: r.name === selected ? "selected" : "",
      onclick: () => openRun(r.name) },
    el("td", {}, el("b", { text: r.name }),
      r.objective && r.objective !== "sft" ? el("span", { class: "muted", text: ` ${r.objective}` }) : ""),
    el("td", {}, el("span", { class: `badge ${r.status}`, text: t(`state.${r.status}`), title: r.problem || "" })),
    el("td", { class: "mono", text: r.base_model || "" }),
    el("td", { text: String(r.steps ?? "") }),
    el("td", { text: `${fmt(r.first_loss)} → ${fmt(r.final_loss)}` }),
    el("td", { text: fmt(r.eval_loss) }),
    el("td", { class: "muted", text: (r.finished || "").replace("T", " ") }))));
  $("#runs-empty").classList.toggle("hidden", runs.length > 0);
  const exportSelect = $("#export-run");
  const keep = exportSelect.value;
  exportSelect.replaceChildren(...runs.filter((r) => r.chat_ready).map((r) => el("option", { value: r.name, text: r.name })));
  if (keep) exportSelect.value = keep;
}

async function openRun(name) {
  selected = name;
  document.querySelectorAll("#runs-table tbody tr").forEach((tr) => tr.classList.toggle("selected", tr.dataset.run === name));
  let detail;
  try { detail = await api(`api/runs/${encodeURIComponent(name)}`); } catch (err) { toast(err.message, true); return; }
  $("#run-detail").classList.remove("hidden");
  $("#run-detail-name").textContent = name;
  drawLossChart($("#run-chart"), detail.metrics, "");
  // Preference runs: their reward margins (train and eval), with the last reward accuracy in the caption
  // (KTO logs margins but no accuracy).
  const margins = detail.metrics.filter((m) => typeof m["rewards/margins"] === "number");
  $("#run-reward").classList.toggle("hidden", !margins.length);
  if (margins.length) {
    drawLossChart($("#run-reward-chart"), detail.metrics, "", ["rewards/margins", "eval_rewards/margins"]);
    const last = (key) => {
      const rows = detail.metrics.filter((m) => typeof m[key] === "number");
      return rows.length ? `${(100 * rows[rows.length - 1][key]).toFixed(0)} %` : "–";
    };
    $("#run-reward-caption").textContent = t("runs.reward_caption")
      .replace("{train}", last("rewards/accuracies")).replace("{eval}", last("eval_rewards/accuracies"));
  }
  $("#run-report").innerHTML = detail.report_html;  // escaped server-side before markdown rendering
  renderEvaluation($("#run-eval"), name, await loadEvaluation(name, detail));
  $("#run-config").href = `api/runs/${encodeURIComponent(name)}/files/config.yaml`;
  $("#run-chat").disabled = !detail.chat_ready;
  $("#run-export").disabled = !detail.chat_ready;
}

function renderExport(status, files, report) {
  const badge = $("#export-state");
  badge.className = `badge ${status.state}`;
  badge.textContent = t(`state.${status.state}`);
  $("#export-start").disabled = status.state === "running";
  $("#export-command").textContent = status.command || "";
  $("#export-log").textContent = status.log || "";
  const list = $("#export-files");
  list.replaceChildren(...(files || []).map((f) => el("li", {},
    el("a", { href: f.url, download: f.name, text: f.relative }), el("span", { class: "muted", text: sizeText(f.bytes) }))));
  if (!files || !files.length) list.append(el("li", { class: "muted", text: t("export.no_files") }));
  $("#export-report").replaceChildren(...(report ? verificationBlocks(report) : [el("p", { class: "muted", text: t("export.no_report") })]));
}

// verification.md -> DOM: its Markdown table as a table (status cells coloured, long details
// wrapped), other lines as text. Built with text nodes only: nothing in the file becomes HTML.
const cellsOf = (line) => line.trim().replace(/^\|/, "").replace(/\|$/, "").split(/(?<!\\)\|/).map((c) => c.trim().replaceAll("\\|", "|"));
const isRule = (line) => /^\|(\s*:?-+:?\s*\|)+\s*$/.test(line.trim());
const STATUSES = new Set(["PASS", "FAIL", "SKIP", "INFO"]);

export function verificationBlocks(markdown) {
  const blocks = [];
  let rows = [];
  const flush = () => {
    if (!rows.length) return;
    const [head, ...body] = rows;
    blocks.push(el("table", { class: "verification" },
      el("thead", {}, el("tr", {}, ...head.map((c) => el("th", { text: c })))),
      el("tbody", {}, ...body.map((cells) => el("tr", {}, ...cells.map((c) =>
        STATUSES.has(c) ? el("td", {}, el("span", { class: `status ${c.toLowerCase()}`, text: c })) : el("td", { text: c })))))));
    rows = [];
  };
  let code = null;  // lines of an open ``` block
  for (const line of markdown.split("\n")) {
    if (line.trim().startsWith("```")) {
      if (code) { blocks.push(el("pre", { text: code.join("\n") })); code = null; } else { flush(); code = []; }
      continue;
    }
    if (code) { code.push(line); continue; }
    if (line.trim().startsWith("|")) { if (!isRule(line)) rows.push(cellsOf(line)); continue; }
    flush();
    const text = line.replace(/^#+\s*/, "").replaceAll("**", "").replaceAll("`", "").trim();
    if (text) blocks.push(el(line.startsWith("#") ? "h3" : "p", { text }));
  }
  flush();
  return blocks;
}

async function pollExport() {
  clearTimeout(exportTimer);
  const status = await api("api/export/status");
  const name = $("#export-run").value;
  if (status.state === "idle" || (status.target && !status.target.endsWith(`/${name}`))) {
    const listing = name ? await api(`api/export/${encodeURIComponent(name)}`) : { files: [], report: "" };
    renderExport({ state: status.state === "running" ? "running" : "idle" }, listing.files, listing.report);
  } else {
    renderExport(status, status.files, status.report);
  }
  if (status.state === "running") exportTimer = setTimeout(pollExport, 1000);
}

export function initRuns(shared) {
  $("#runs-dir").textContent = shared.info.runs_dir;
  $("#runs-refresh").addEventListener("click", refreshRuns);
  $("#run-chat").addEventListener("click", async () => { showTab("chat"); await shared.chatWith(selected); });
  $("#run-export").addEventListener("click", () => { showTab("export"); $("#export-run").value = selected; pollExport(); });
  $("#export-start").addEventListener("click", async () => {
    try { await api("api/export/start", { json: { name: $("#export-run").value } }); } catch (err) { toast(err.message, true); }
    pollExport();
  });
  $("#export-run").addEventListener("change", pollExport);
  document.addEventListener("runschanged", refreshRuns);
  document.addEventListener("languagechange", () => { refreshRuns(); if (selected) openRun(selected); });
  onTab("runs", refreshRuns);
  onTab("export", async () => { await refreshRuns(); pollExport(); });
  refreshRuns();
}
