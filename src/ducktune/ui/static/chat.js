// Chat tab: base and tuned side by side, multi-turn, streamed from the same OpenAI-compatible
// /v1/chat/completions endpoint that `ducktune serve` offers.
import { t } from "./i18n.js";
import { $, api, el, toast } from "./util.js";
import { onTab } from "./app.js";

const history = { base: [], tuned: [] };
// The calls of a column's last answer still waiting for their results (the next thing typed answers them).
const pending = { base: [], tuned: [] };
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

// The tools box as a request's `tools`: null when empty; an Error saying why when it is no JSON list.
function readTools() {
  const text = $("#chat-tools").value.trim();
  if (!text) return null;
  let tools;
  try { tools = JSON.parse(text); } catch (err) { throw new Error(`${t("chat.tools_invalid")} ${err.message}`); }
  tools = Array.isArray(tools) ? tools : [tools];
  if (!tools.every((tool) => tool && typeof tool === "object" && !Array.isArray(tool))) throw new Error(t("chat.tools_invalid"));
  return tools.length ? tools : null;
}

function callText(call) {
  return `${call.function.name}(${call.function.arguments})`;
}

// Streamed tool_calls deltas into whole calls: a call's pieces share its index (OpenAI's streaming shape).
function addCallDeltas(calls, deltas) {
  for (const piece of deltas) {
    const at = Number.isInteger(piece.index) ? piece.index : calls.length;
    const call = calls[at] || (calls[at] = { id: "", type: "function", function: { name: "", arguments: "" } });
    if (piece.id) call.id = piece.id;
    if (piece.function && piece.function.name) call.function.name += piece.function.name;
    if (piece.function && piece.function.arguments) call.function.arguments += piece.function.arguments;
  }
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
  const calls = [];
  try {
    const response = await fetch("v1/chat/completions", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model, messages: history[column], stream: true, stream_options: { include_usage: true },
        max_tokens: settings.maxTokens, temperature: settings.temperature, ...(settings.tools ? { tools: settings.tools } : {}) }),
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
      if (delta && delta.tool_calls) addCallDeltas(calls, delta.tool_calls);
      if (delta && delta.content) {
        text += delta.content;
        said.textContent = text.trim() ? text : "";  // leading blank lines: just the cursor until there is text
      }
      if (delta && (delta.content || delta.reasoning_content)) node.parentElement.scrollTop = node.parentElement.scrollHeight;
    }
    clearTimeout(placeholder);
    said.textContent = text.trim() ? text : (calls.length ? "" : t("chat.empty_answer"));
    for (const call of calls) node.append(el("div", { class: "call", text: callText(call) }));
    node.classList.toggle("empty-answer", !text.trim() && !calls.length);
    node.classList.remove("pending");
    node.dataset.done = "1";
    const seconds = (performance.now() - started) / 1000;
    if (usage) node.append(el("span", { class: "meta", text: `${usage.completion_tokens} tokens · ${seconds.toFixed(1)} s` }));
    history[column].push(calls.length ? { role: "assistant", content: text, tool_calls: calls } : { role: "assistant", content: text });
    pending[column] = calls.slice();
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
    pending.base = []; pending.tuned = [];
    $("#messages-base").replaceChildren();
    $("#messages-tuned").replaceChildren();
    updateComposer();
  }

  // With calls waiting, what is typed next is their result (the first waiting call of each column).
  function updateComposer() {
    const input = $("#chat-input");
    const waiting = pending.tuned[0] || pending.base[0];
    $("#chat-form").classList.toggle("tool-result", Boolean(waiting));
    if (waiting) {
      delete input.dataset.i18nPlaceholder;
      input.placeholder = t("chat.tool_placeholder").replace("{call}", callText(waiting));
    } else {
      input.dataset.i18nPlaceholder = "chat.placeholder";
      input.placeholder = t("chat.placeholder");
    }
  }

  // The selected run's trained functions fill the tools box (unless the user wrote their own).
  async function offerRunTools(name) {
    const box = $("#chat-tools");
    let tools = null;
    try { tools = ((await api("api/runs")).find((r) => r.name === name) || {}).tools || null; } catch (err) { tools = null; }
    if (!box.value.trim() || box.dataset.filled === box.value) {
      box.value = tools ? JSON.stringify(tools, null, 2) : "";
      box.dataset.filled = box.value;
    }
    const count = $("#chat-tools-count");
    count.textContent = tools ? String(tools.length) : "";
    count.classList.toggle("hidden", !tools);
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
    let tools;
    try { tools = readTools(); } catch (err) {
      toast(err.message, true);
      busy = false;
      $("#chat-send").disabled = false;
      return;
    }
    input.value = "";
    const settings = { maxTokens: Number($("#chat-max-tokens").value) || 256,
      temperature: Number($("#chat-temperature").value) || 0, tools };
    const withBase = compareMode();
    let columns = withBase ? ["tuned", "base"] : ["tuned"];
    if (columns.some((c) => pending[c].length)) {
      // A tool's result: it answers each column's first waiting call; a column asks again once all are answered.
      columns = columns.filter((c) => pending[c].length);
      for (const column of columns) {
        const call = pending[column].shift();
        history[column].push({ role: "tool", tool_call_id: call.id, name: call.function.name, content: text });
        bubble(column, "tool", `${t("chat.tool_result")} ${call.function.name}: ${text}`);
      }
      columns = columns.filter((c) => !pending[c].length);
    } else {
      for (const column of columns) {
        history[column].push({ role: "user", content: text });
        bubble(column, "user", text);
      }
    }
    // Both requests go out at once; the server answers them one after the other on the same weights.
    await Promise.all(columns.map((c) => answer(c, c === "base" ? `${select.value}-base` : select.value, settings)));
    updateComposer();
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
  select.addEventListener("change", () => { reset(); compareMode(); offerRunTools(select.value); });
  document.addEventListener("runschanged", () => refreshRuns());
  shared.chatWith = async (name) => { await refreshRuns(name); reset(); compareMode(); await offerRunTools(select.value); };
  onTab("chat", async () => { await refreshRuns(); compareMode(); await offerRunTools(select.value); });
}
