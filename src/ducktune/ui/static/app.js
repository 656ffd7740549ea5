// Entry point: tabs, language switch, and the state the tabs share.
import { applyLanguage, setLanguage } from "./i18n.js";
import { $, api, toast } from "./util.js";
import { initData } from "./data.js";
import { initTrain } from "./train.js";
import { initChat } from "./chat.js";
import { initRuns } from "./runs.js";

export const shared = {
  info: null,          // /api/info
  dataset: null,       // path of the dataset checked on the Data tab
  formModel: () => "", // the model currently chosen in the Train form
};

const tabHooks = {};
export function onTab(name, hook) { tabHooks[name] = hook; }

export function showTab(name) {
  document.querySelectorAll(".tabs button").forEach((b) => b.classList.toggle("active", b.dataset.tab === name));
  document.querySelectorAll(".tab-panel").forEach((p) => p.classList.toggle("active", p.id === `tab-${name}`));
  if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
  if (tabHooks[name]) tabHooks[name]();
}

async function main() {
  applyLanguage();
  document.querySelectorAll(".lang button").forEach((b) => b.addEventListener("click", () => setLanguage(b.dataset.lang)));
  document.querySelectorAll(".tabs button").forEach((b) => b.addEventListener("click", () => showTab(b.dataset.tab)));
  try {
    shared.info = await api("api/info");
  } catch (err) {
    toast(String(err.message || err), true);
    return;
  }
  await initTrain(shared);
  initData(shared);
  initChat(shared);
  initRuns(shared);
  const first = (location.hash || "#data").slice(1);
  showTab(["data", "train", "chat", "export", "runs"].includes(first) ? first : "data");
  document.body.dataset.ready = "1";
}

main();
