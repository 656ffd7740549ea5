// Chat tab: base and tuned side by side, multi-turn, streamed from the same OpenAI-compatible
// /v1/chat/completions endpoint that `ducktune serve` offers.
import { t } from "./i18n.js";
import { $, api, el, toast } from "./util.js";
import { onTab } from "./app.js";

const history = { base: [], tuned: [] };
let busy = false;

async function* sseEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of event.split("\n")) if (line.startsWith("data: ")) yield line.slice(6);
    }
  }
}

function bubble(column, role, text, cls = "") {
  const box = $(`#messages-${column}`);
  const node = el("div", { class: `msg ${role} ${cls}`, text });
  box.append(node);
  box.scrollTop = box.scrollHeight;
  return node;
}

async function answer(column, model, settings) {
  const node = bubble(column, "assistant", "", "pending");
  node.dataset.model = model;
  // What a reasoning model thinks (reasoning_content) is shown apart, above its answer.
  const thinking = el("div", { class: "thinking hidden" });
  const said = el("span", { class: "said" });
  node.append(thinking, said);
  const placeholder = setTimeout(() => { if (!node.textContent) said.textContent = t("chat.loading"); }, 700);
  const started = performance.now();
  let text = "", thought = "", usage = null;
  try {
    const response = await fetch("v1/chat/completions", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model, messages: history[column], stream: true, stream_options: { include_usage: true },
        max_tokens: settings.maxTokens, temperature: settings.temperature }),
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error((body.error && body.error.message) || response.statusText);
    }
    for await (const data of sseEvents(response)) {
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      if (chunk.usage) usage = chunk.usage;
      const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
      if (delta && delta.reasoning_content) {
        thought += delta.reasoning_content;
        thinking.textContent = thought;
        thinking.classList.remove("hidden");
        if (said.textContent === t("chat.loading")) said.textContent = "";
      }
      if (delta && delta.content) {
        text += delta.content;
        said.textContent = text.trim() ? text : "";  // leading blank lines: just the cursor until there is text
      }
      if (delta && (delta.content || delta.reasoning_content)) node.parentElement.scrollTop = node.parentElement.scrollHeight;
    }
    clearTimeout(placeholder);
    said.textContent = text.trim() ? text : t("chat.empty_answer");
    node.classList.toggle("empty-answer", !text.trim());
    node.classList.remove("pending");
    node.dataset.done = "1";
    const seconds = (performance.now() - started) / 1000;
    if (usage) node.append(el("span", { class: "meta", text: `${usage.completion_tokens} tokens · ${seconds.toFixed(1)} s` }));
    history[column].push({ role: "assistant", content: text });
  } catch (err) {
    clearTimeout(placeholder);
    node.className = "msg assistant error";
    node.textContent = err.message;
    history[column].pop();  // the question goes unanswered: drop it so the next turn stays well-formed
  }
}

export function initChat(shared) {
  const select = $("#chat-run");

  async function refreshRuns(selected) {
    let models = [];
    try { models = (await api("v1/models")).data.map((m) => m.id); } catch (err) { toast(err.message, true); }
    const runs = models.filter((id) => !(id.endsWith("-base") && models.includes(id.slice(0, -5))));
    const previous = selected || select.value;
    select.replaceChildren(...runs.map((id) => el("option", { value: id, text: id })));
    if (runs.includes(previous)) select.value = previous;
    $("#chat-empty").classList.toggle("hidden", runs.length > 0);
    $("#chat-send").disabled = !runs.length;
    select.dataset.models = JSON.stringify(models);
  }

  function reset() {
    history.base = []; history.tuned = [];
    $("#messages-base").replaceChildren();
    $("#messages-tuned").replaceChildren();
  }

  function compareMode() {
    const models = JSON.parse(select.dataset.models || "[]");
    const withBase = $("#chat-compare").checked && models.includes(`${select.value}-base`);
    $("#chat-columns").classList.toggle("single", !withBase);
    return withBase;
  }

  async function send() {
    const input = $("#chat-input");
    const text = input.value.trim();
    if (!text || busy || !select.value) return;
    busy = true;
    $("#chat-send").disabled = true;
    input.value = "";
    const settings = { maxTokens: Number($("#chat-max-tokens").value) || 256,
      temperature: Number($("#chat-temperature").value) || 0 };
    const withBase = compareMode();
    const columns = withBase ? ["tuned", "base"] : ["tuned"];
    for (const column of columns) {
      history[column].push({ role: "user", content: text });
      bubble(column, "user", text);
    }
    // Both requests go out at once; the server answers them one after the other on the same weights.
    await Promise.all(columns.map((c) => answer(c, c === "base" ? `${select.value}-base` : select.value, settings)));
    busy = false;
    $("#chat-send").disabled = false;
    input.focus();
  }

  $("#chat-form").addEventListener("submit", (e) => { e.preventDefault(); send(); });
  $("#chat-input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(); }
  });
  $("#chat-reset").addEventListener("click", reset);
  $("#chat-compare").addEventListener("change", compareMode);
  select.addEventListener("change", () => { reset(); compareMode(); });
  document.addEventListener("runschanged", () => refreshRuns());
  shared.chatWith = async (name) => { await refreshRuns(name); reset(); compareMode(); };
  onTab("chat", async () => { await refreshRuns(); compareMode(); });
}
