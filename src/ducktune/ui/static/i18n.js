// English and Chinese labels. Option names and their documentation come from the config
// schema (English); everything the page itself says is here.
const STRINGS = {
  en: {
    "tagline": "your data → your model",
    "tab.data": "Data", "tab.train": "Train", "tab.chat": "Chat", "tab.export": "Export", "tab.runs": "Runs",
    "data.title": "Dataset",
    "data.hint": "Upload a JSON, JSONL, CSV or Parquet file (Alpaca, ShareGPT, messages…), or pick one you uploaded before.",
    "data.drop": "Drop a file here or click to choose",
    "data.pick": "Uploaded files", "data.format": "Format", "data.check": "Check", "data.checking": "Checking…",
    "data.use": "Use for training →", "data.results": "Check results", "data.none": "No dataset checked yet.",
    "data.token_lengths": "tokens per sample", "data.cut_at": "cut at", "data.records": "records", "data.samples": "samples", "data.problems": "problems", "data.format_found": "format",
    "data.ok": "Ready to train", "data.has_problems": "Fix these records, or turn on data.skip_bad to train on the good ones:", "data.fix_problems": "Fix these problems:",
    "data.preview": "Templated preview", "data.trained": "trained tokens", "data.context": "context (no loss)",
    "data.preview_hint": "Rendered with the chat template of the model chosen on the Train tab:",
    "data.show_preview": "Show preview", "data.tokens": "tokens", "data.truncated": "truncated",
    "data.uploaded": "Uploaded", "data.choose_first": "Upload or pick a dataset first.",
    "data.loading_model": "Loading the model's tokenizer (the built-in model is converted once, ~1 min)…",
    "train.title": "Training settings", "train.advanced": "all options",
    "train.hint": "Every option of `ducktune train`, generated from its config schema. The UI saves a YAML file and runs `ducktune train` on it.",
    "train.start": "Start training", "train.stop": "Stop", "train.show_yaml": "Show YAML", "train.download": "Download YAML",
    "train.progress": "Progress", "train.loss": "Loss", "train.log": "Log", "train.full_log": "full log",
    "train.no_points": "The loss curve appears after the first logged step.",
    "train.started": "Training started", "train.step": "step", "train.preparing": "preparing (loading data and model)…",
    "train.done": "Training finished. Chat with the model on the Chat tab.",
    "train.stopped": "Training stopped. Start training with the same settings resumes it from its last checkpoint.",
    "state.idle": "idle", "state.running": "running", "state.stopping": "stopping", "state.completed": "completed",
    "state.failed": "failed", "state.stopped": "stopped", "state.interrupted": "interrupted",
    "state.unknown": "unknown", "state.damaged": "damaged (run.json)",
    "chat.run": "Run", "chat.max_tokens": "Max tokens", "chat.temperature": "Temperature",
    "chat.compare": "compare with the base model", "chat.reset": "New conversation",
    "chat.base": "Base model", "chat.tuned": "Tuned model", "chat.untuned": "untuned", "chat.yours": "yours",
    "chat.placeholder": "Ask something… (Enter to send, Shift+Enter for a new line)", "chat.send": "Send",
    "chat.no_runs": "No finished runs yet: train one on the Train tab.",
    "chat.loading": "loading the model…", "chat.empty_answer": "(empty answer)",
    "chat.tools": "Tools (function calling)",
    "chat.tools_hint": "The functions the model may call, as a JSON list (OpenAI's tools). A run trained on tool calls fills in the ones it trained on. When the model calls one, type the function's result and send it.",
    "chat.tools_invalid": "Tools: not a JSON list of functions:", "chat.tool_result": "Result of",
    "chat.tool_placeholder": "The result of {call} (what the function returned; Enter to send)",
    "export.title": "Export to GGUF and Ollama",
    "export.start": "Export", "export.files": "Files", "export.verification": "Verification",
    "export.no_files": "No exported files for this run yet.", "export.no_report": "No verification report yet.",
    "runs.reward_caption": "Reward margins (chosen - rejected) by step; last reward accuracy: train {train}, eval {eval}",
    "runs.title": "Runs", "runs.refresh": "Refresh", "runs.folder": "Folder:", "runs.name": "Run", "runs.status": "Status",
    "runs.base": "Base model", "runs.steps": "Steps", "runs.loss": "Loss (first → final)", "runs.eval": "Eval loss",
    "runs.finished": "Finished", "runs.none": "No runs yet.", "runs.chat": "Chat with it", "runs.export": "Export",
    "section.model": "Model", "section.data": "Data", "section.lora": "LoRA", "section.train": "Training",
    "section.output": "Output", "section.eval": "Evaluation",
    "eval.title": "Evaluation (base vs tuned)", "eval.metric": "Metric", "eval.loss": "Held-out loss",
    "eval.perplexity": "Perplexity", "eval.exact_match": "Exact match %", "eval.choice_accuracy": "Multiple-choice accuracy %",
    "eval.subject": "Subject", "eval.prompt": "Prompt", "eval.bleed": "Bleed",
    "eval.bleed_title": "Forgetting / bleed on general prompts",
    "eval.bleed_not_measured": "Bleed on {prompts} general prompts: not measured (no persona terms or trained answers to look for: set eval.persona_terms); {changed} answers changed; mean KL(tuned || base) {kl} nats.",
    "eval.bleed_summary": "{bleed} of {prompts} general prompts answered with trained text although unrelated ({rate} %); {changed} answers changed; mean KL(tuned || base) {kl} nats.",
    "eval.unchanged": "No general answer changed.", "eval.probe_title": "Answers during training (generation probe)",
    "eval.preference_accuracy": "Prefers chosen %", "eval.preference_margin": "Log-prob margin (chosen - rejected)",
    "eval.preference_reward": "Held-out pairs: {pairs}; DPO reward against {reference}: accuracy {accuracy} %, mean margin {margin}.",
    "eval.bleed_none": "Not measured for this run (no adapter to switch off: base and tuned are different models).",
  },
  zh: {
    "tagline": "你的数据 → 你的模型",
    "tab.data": "数据", "tab.train": "训练", "tab.chat": "对话", "tab.export": "导出", "tab.runs": "历史运行",
    "data.title": "数据集",
    "data.hint": "上传 JSON、JSONL、CSV 或 Parquet 文件（Alpaca、ShareGPT、messages 等格式），或选择之前上传的文件。",
    "data.drop": "拖放文件到这里，或点击选择",
    "data.pick": "已上传的文件", "data.format": "格式", "data.check": "检查", "data.checking": "正在检查…",
    "data.use": "用于训练 →", "data.results": "检查结果", "data.none": "尚未检查数据集。",
    "data.token_lengths": "每个样本的 token 数", "data.cut_at": "个被截断于", "data.records": "条记录", "data.samples": "个样本", "data.problems": "个问题", "data.format_found": "格式",
    "data.ok": "可以开始训练", "data.has_problems": "请修正这些记录，或开启 data.skip_bad 只用没有问题的记录训练：", "data.fix_problems": "请修正这些问题：",
    "data.preview": "模板预览", "data.trained": "参与训练的 token", "data.context": "上下文（不计损失）",
    "data.preview_hint": "使用“训练”页所选模型的对话模板渲染：",
    "data.show_preview": "显示预览", "data.tokens": "个 token", "data.truncated": "已截断",
    "data.uploaded": "已上传", "data.choose_first": "请先上传或选择一个数据集。",
    "data.loading_model": "正在加载模型的分词器（内置模型首次使用需转换，约 1 分钟）…",
    "train.title": "训练设置", "train.advanced": "全部选项",
    "train.hint": "`ducktune train` 的全部选项，由配置模式自动生成。界面会保存一个 YAML 文件并用它运行 `ducktune train`。",
    "train.start": "开始训练", "train.stop": "停止", "train.show_yaml": "查看 YAML", "train.download": "下载 YAML",
    "train.progress": "进度", "train.loss": "损失", "train.log": "日志", "train.full_log": "完整日志",
    "train.no_points": "记录第一步后将显示损失曲线。",
    "train.started": "训练已开始", "train.step": "步", "train.preparing": "准备中（加载数据和模型）…",
    "train.done": "训练完成。可以在“对话”页与模型聊天。",
    "train.stopped": "训练已停止。用相同的设置再次开始训练，即可从最后的检查点继续。",
    "state.idle": "空闲", "state.running": "运行中", "state.stopping": "正在停止", "state.completed": "已完成",
    "state.failed": "失败", "state.stopped": "已停止", "state.interrupted": "已中断",
    "state.unknown": "未知", "state.damaged": "已损坏 (run.json)",
    "chat.run": "运行", "chat.max_tokens": "最大 token 数", "chat.temperature": "温度",
    "chat.compare": "与基础模型对比", "chat.reset": "新对话",
    "chat.base": "基础模型", "chat.tuned": "微调后的模型", "chat.untuned": "未微调", "chat.yours": "你的",
    "chat.placeholder": "输入问题…（Enter 发送，Shift+Enter 换行）", "chat.send": "发送",
    "chat.no_runs": "还没有完成的训练：请在“训练”页训练一个模型。",
    "chat.loading": "正在加载模型…", "chat.empty_answer": "（空回答）",
    "chat.tools": "工具（函数调用）",
    "chat.tools_hint": "模型可以调用的函数，JSON 列表（OpenAI 的 tools 格式）。用工具调用数据训练的运行会自动填入它训练过的函数。模型调用函数后，输入函数的返回结果并发送。",
    "chat.tools_invalid": "工具：不是函数的 JSON 列表：", "chat.tool_result": "结果：",
    "chat.tool_placeholder": "{call} 的结果（函数的返回值；Enter 发送）",
    "export.title": "导出为 GGUF 和 Ollama",
    "export.start": "导出", "export.files": "文件", "export.verification": "校验",
    "export.no_files": "该运行还没有导出的文件。", "export.no_report": "还没有校验报告。",
    "runs.reward_caption": "奖励差（chosen - rejected）随步数变化；最近的奖励准确率：训练 {train}，验证 {eval}",
    "runs.title": "历史运行", "runs.refresh": "刷新", "runs.folder": "目录：", "runs.name": "运行", "runs.status": "状态",
    "runs.base": "基础模型", "runs.steps": "步数", "runs.loss": "损失（首 → 末）", "runs.eval": "验证损失",
    "runs.finished": "完成时间", "runs.none": "还没有运行。", "runs.chat": "与它对话", "runs.export": "导出",
    "section.model": "模型", "section.data": "数据", "section.lora": "LoRA", "section.train": "训练",
    "section.output": "输出", "section.eval": "评估",
    "eval.title": "评估（基础模型 vs 微调后）", "eval.metric": "指标", "eval.loss": "留出集损失",
    "eval.perplexity": "困惑度", "eval.exact_match": "完全匹配 %", "eval.choice_accuracy": "选择题准确率 %",
    "eval.subject": "科目", "eval.prompt": "问题", "eval.bleed": "串味",
    "eval.bleed_title": "遗忘 / 串味（通用问题）",
    "eval.bleed_not_measured": "{prompts} 个通用问题的串味：未测量（没有可查找的人设词或训练答案：请设置 eval.persona_terms）；{changed} 个回答有变化；平均 KL(微调 || 基础) {kl} nats。",
    "eval.bleed_summary": "{prompts} 个无关的通用问题中有 {bleed} 个回答带上了训练内容（{rate} %）；{changed} 个回答有变化；平均 KL(微调 || 基础) {kl} nats。",
    "eval.unchanged": "通用问题的回答都没有变化。", "eval.probe_title": "训练中的回答（生成探针）",
    "eval.preference_accuracy": "偏好 chosen %", "eval.preference_margin": "对数概率差（chosen - rejected）",
    "eval.preference_reward": "留出的偏好对：{pairs}；相对 {reference} 的 DPO 奖励：准确率 {accuracy} %，平均差 {margin}。",
    "eval.bleed_none": "本次训练未测量（没有可关闭的适配器：基础模型与微调模型是不同的模型）。",
  },
};

let lang = localStorage.getItem("ducktune.lang")
  || ((navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en");

export function t(key) {
  return (STRINGS[lang] && STRINGS[lang][key]) || STRINGS.en[key] || key;
}

export function currentLang() { return lang; }

export function applyLanguage(root = document) {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  root.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  root.querySelectorAll("[data-i18n-placeholder]").forEach((el) => { el.placeholder = t(el.dataset.i18nPlaceholder); });
  document.querySelectorAll(".lang button").forEach((b) => b.classList.toggle("active", b.dataset.lang === lang));
}

export function setLanguage(next) {
  lang = next;
  localStorage.setItem("ducktune.lang", next);
  applyLanguage();
  document.dispatchEvent(new CustomEvent("languagechange"));
}
