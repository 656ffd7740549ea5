// The Runs tab's evaluation panel: eval/eval.json (base vs tuned metrics, multiple choice by
// subject, the forgetting / bleed table) and the generation probe's answers during training.
// Everything is built from text nodes: answers are untrusted text and never become HTML.
import { t } from "./i18n.js";
import { api, el } from "./util.js";

const METRICS = [["loss", "eval.loss", 4], ["perplexity", "eval.perplexity", 2], ["exact_match", "eval.exact_match", 1],
  ["bleu_4", "BLEU-4", 2], ["rouge_1", "ROUGE-1", 2], ["rouge_2", "ROUGE-2", 2], ["rouge_l", "ROUGE-L", 2],
  ["choice_accuracy", "eval.choice_accuracy", 1], ["preference_accuracy", "eval.preference_accuracy", 1],
  ["preference_margin", "eval.preference_margin", 2]];

const num = (v, digits) => (v === null || v === undefined ? "n/a" : Number(v).toFixed(digits));

// detail.evaluation when the server sends it (ui/runs.py run_evaluation), else the run's own files.
export async function loadEvaluation(name, detail) {
  if (detail && detail.evaluation !== undefined) return detail.evaluation;
  const base = `api/runs/${encodeURIComponent(name)}/files/`;
  let result = null;
  let probes = [];
  try { result = await api(`${base}eval/eval.json`); } catch { result = null; }
  try {
    const text = await api(`${base}metrics.jsonl`);
    const lines = typeof text === "string" ? text.split("\n") : [JSON.stringify(text)];
    probes = lines.filter((l) => l.includes('"probe"')).map((l) => { try { return JSON.parse(l); } catch { return null; } })
      .filter((r) => r && Array.isArray(r.probe));
  } catch { probes = []; }
  if (!result && !probes.length) return null;
  return { eval: result, probes, plot: false };
}

function metricsTable(result) {
  const rows = METRICS.filter(([key]) => result[key] && (result[key].tuned != null || result[key].base != null));
  if (!rows.length) return null;
  return el("table", { class: "eval-metrics" },
    el("thead", {}, el("tr", {}, el("th", { text: t("eval.metric") }), el("th", { text: t("chat.base") }),
      el("th", { text: t("chat.tuned") }))),
    el("tbody", {}, ...rows.map(([key, label, digits]) => el("tr", {},
      el("td", { text: t(label) }), el("td", { text: num(result[key].base, digits) }),
      el("td", { text: num(result[key].tuned, digits) })))));
}

function subjectsTable(choices) {
  const tuned = (choices && choices.tuned && choices.tuned.subjects) || {};
  const base = (choices && choices.base && choices.base.subjects) || {};
  const names = Object.keys(tuned);
  if (names.length < 2) return null;
  return el("table", { class: "eval-subjects" },
    el("thead", {}, el("tr", {}, el("th", { text: t("eval.subject") }), el("th", { text: t("chat.base") }),
      el("th", { text: t("chat.tuned") }))),
    el("tbody", {}, ...names.map((s) => el("tr", {}, el("td", { text: s }), el("td", { text: num(base[s], 1) }),
      el("td", { text: num(tuned[s], 1) })))));
}

// eval.json's "preference" block beyond the table's two rows: the DPO reward against the reference.
function preferenceNote(preference) {
  if (!preference || preference.reward_accuracy === undefined || preference.reward_accuracy === null) return null;
  return el("p", { class: "muted", text: t("eval.preference_reward").replace("{pairs}", preference.pairs)
    .replace("{reference}", preference.reference).replace("{accuracy}", num(preference.reward_accuracy, 0))
    .replace("{margin}", num(preference.reward_margin, 3)) });
}

function bleedBlock(bleed) {
  if (!bleed) return [el("h3", { text: t("eval.bleed_title") }), el("p", { class: "muted", text: t("eval.bleed_none") })];
  // bleed_rate null: nothing to look for (eval.json says not measured; never shown as 0 %).
  const measured = !(bleed.bleed_rate === null || bleed.bleed_rate === undefined);
  const key = measured ? "eval.bleed_summary" : "eval.bleed_not_measured";
  const summary = t(key).replace("{bleed}", bleed.bleed).replace("{prompts}", bleed.prompts)
    .replace("{rate}", num(bleed.bleed_rate, 0)).replace("{changed}", bleed.changed).replace("{kl}", num(bleed.mean_kl, 4));
  const changed = bleed.rows.filter((r) => r.changed).sort((a, b) => Number(b.bleed) - Number(a.bleed));  // bleed first
  const table = el("table", { class: "eval-bleed" },
    el("thead", {}, el("tr", {}, el("th", { text: t("eval.prompt") }), el("th", { text: t("chat.base") }),
      el("th", { text: t("chat.tuned") }), measured ? el("th", { text: t("eval.bleed") }) : null)),
    el("tbody", {}, ...changed.map((r) => el("tr", { class: r.bleed ? "bleed" : "" },
      el("td", { text: r.prompt }), el("td", { text: r.base }), el("td", { text: r.tuned }),
      measured ? el("td", { text: r.bleed ? r.bleed_text : "" }) : null))));
  return [el("h3", { text: t("eval.bleed_title") }), el("p", { class: bleed.bleed ? "bleed-note" : "", text: summary }),
    changed.length ? table : el("p", { class: "muted", text: t("eval.unchanged") })];
}

function probeBlock(probes) {
  if (!probes || !probes.length) return [];
  const prompts = probes[0].probe.map((p) => p.prompt);
  return [el("h3", { text: t("eval.probe_title") }), el("table", { class: "eval-probe" },
    el("thead", {}, el("tr", {}, el("th", { text: t("runs.steps") }), ...prompts.map((p) => el("th", { text: p })))),
    el("tbody", {}, ...probes.map((row) => el("tr", {}, el("td", { text: String(row.step) }),
      ...row.probe.map((p) => el("td", { text: p.answer }))))))];
}

export function renderEvaluation(container, name, evaluation) {
  if (!evaluation) { container.replaceChildren(); container.classList.add("hidden"); return; }
  const result = evaluation.eval;
  const parts = [el("h2", { text: t("eval.title") })];
  if (result) {
    parts.push(el("p", { class: "muted", text: `ducktune eval · ${(result.finished || "").replace("T", " ")}` }));
    parts.push(metricsTable(result), preferenceNote(result.preference), subjectsTable(result.choices));
    if (evaluation.plot) parts.push(el("img", { src: `api/runs/${encodeURIComponent(name)}/files/eval/eval.png`, alt: "eval" }));
    parts.push(...bleedBlock(result.bleed));
  }
  parts.push(...probeBlock(evaluation.probes));
  container.replaceChildren(...parts.filter(Boolean));
  container.classList.remove("hidden");
}
