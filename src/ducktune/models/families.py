"""The model families people bring, and a tiny offline stand-in for each.

A `Family` names what makes a family different for fine-tuning and export: its transformers
class and config keys (`arch`, built by `standin_configs.tiny_config`), its tokenizer kind
(`tokenizer`, built by `standin_tokenizers.build_tokenizer`: the family's real tokenizer model,
normalizer, pre-tokenizer and decoder, with a small vocabulary trained here), its special tokens,
and its published chat template (`resources/templates/<template>.jinja`, sources in SOURCES.md).

A stand-in is a real Hugging Face folder with random weights, a few MB: everything downstream
(templating, masks, training, merge, GGUF, llama.cpp, the Ollama TEMPLATE) treats it exactly
like the downloaded model. What each family supports is not written here: `ducktune models`
asks the code that decides it (see ducktune.export.support).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ducktune.errors import ModelError
from ducktune.io import atomic_dir


@dataclass(frozen=True)
class Family:
    id: str
    title: str                    # the models a user knows it by
    model_class: str              # transformers class in config.json "architectures"
    arch: str                     # stand-in config kind (standin_configs.tiny_config)
    tokenizer: str                # stand-in tokenizer kind (standin_tokenizers.build_tokenizer)
    template: str                 # resources/templates/<template>.jinja
    specials: dict = field(default_factory=dict)  # bos/eos/pad/unk/additional, as the family's tokenizer has them
    remote_code: bool = False     # needs trust_remote_code (no transformers class)
    note: str = ""                # what a user should know
    # tokenizer_config.json's class as published: transformers 5 picks its loading code by it (and
    # some classes rebuild the tokenizer pipeline), so the stand-in must name the same one.
    tokenizer_class: str = "PreTrainedTokenizerFast"
    # generation_config.json's eos_token_id beyond EOS, as published: the tokens that end the family's
    # turns at inference (GLM-4's <|user|> and <|observation|>, which its template writes after an answer).
    stops: tuple = ()
    # config.json keys the family publishes under names of its own, {transformers' name: published name}: the
    # stand-in is saved with the published spelling (EXAONE 3.x's num_layers, read back by ExaoneConfig's attribute_map)
    published_keys: dict = field(default_factory=dict)


def _specials(bos=None, eos=None, pad=None, unk=None, additional=()) -> dict:
    return {"bos": bos, "eos": eos, "pad": pad, "unk": unk, "additional": list(additional)}


# Granite 4.0's (dense and -H): <|end_of_text|> is BOS and EOS, role markers and tool tags as specials
_GRANITE4 = _specials(bos="<|end_of_text|>", eos="<|end_of_text|>", pad="<|pad|>", unk="<|unk|>",
                      additional=["<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
                                  "<|filename|>", "<|reponame|>", "<|start_of_role|>", "<|end_of_role|>",
                                  "<|start_of_plugin|>", "<|end_of_plugin|>", "<tool_call>", "</tool_call>",
                                  "<tool_response>", "</tool_response>"])

# LFM2 and LFM2-MoE: byte-level BPE with its specials at ids 0-13
_LFM2 = _specials(bos="<|startoftext|>", eos="<|im_end|>", pad="<|pad|>",
                  additional=["<|endoftext|>", "<|fim_pre|>", "<|fim_mid|>", "<|fim_suf|>", "<|im_start|>",
                              "<|im_end|>", "<|tool_list_start|>", "<|tool_list_end|>", "<|tool_call_start|>", "<|tool_call_end|>",
                              "<|tool_response_start|>", "<|tool_response_end|>"])
# ERNIE 4.5 dense and MoE: SentencePiece with <s>/</s>, the template's sentence markers and mask tokens
_ERNIE45 = _specials(bos="<s>", eos="</s>", pad="<unk>", unk="<unk>",
                     additional=["<|begin_of_sentence|>", "<|end_of_sentence|>", "<mask:1>", "<mask:4>", "<mask:5>",
                                 "<mask:6>", "<mask:7>"])

_QWEN = _specials(eos="<|im_end|>", pad="<|endoftext|>", additional=["<|im_start|>", "<|im_end|>", "<|endoftext|>"])
_SPM = _specials(bos="<s>", eos="</s>", unk="<unk>")
# DeepSeek-R1's distills (Qwen and Llama) share these tokens, wherever each base vocabulary puts them.
_DEEPSEEK_R1 = _specials(bos="<｜begin▁of▁sentence｜>", eos="<｜end▁of▁sentence｜>", pad="<｜end▁of▁sentence｜>",
                         additional=["<｜User｜>", "<｜Assistant｜>", "<think>", "</think>"])
# Gemma's vocabulary starts <pad> <eos> <bos> <unk> <mask>; GemmaTokenizer adds <mask> when it is missing.
_GEMMA = _specials(bos="<bos>", eos="<eos>", pad="<pad>", unk="<unk>",
                   additional=["<mask>", "<start_of_turn>", "<end_of_turn>"])
# Cohere's vocabulary starts <PAD> <UNK> <CLS> <SEP> <MASK_TOKEN> <BOS_TOKEN> <EOS_TOKEN> <EOP_TOKEN>; turns are
# <|START_OF_TURN_TOKEN|><|USER_TOKEN|>... and end with <|END_OF_TURN_TOKEN|>, the tokenizer's EOS.
_COHERE = _specials(bos="<BOS_TOKEN>", eos="<|END_OF_TURN_TOKEN|>", pad="<PAD>", unk="<UNK>",
                    additional=["<CLS>", "<SEP>", "<MASK_TOKEN>", "<EOS_TOKEN>", "<EOP_TOKEN>",
                                "<|START_OF_TURN_TOKEN|>", "<|USER_TOKEN|>", "<|CHATBOT_TOKEN|>", "<|SYSTEM_TOKEN|>"])

# Granite 3.x's StarCoder-style vocabulary: <|end_of_text|> is BOS, EOS, pad and unk; role markers special
# (3.0/3.1: 49155 tokens, the last three the role markers; 3.3 adds the cite/plugin markers: 49159).
_GRANITE31 = _specials(bos="<|end_of_text|>", eos="<|end_of_text|>", pad="<|end_of_text|>", unk="<|end_of_text|>",
                       additional=["<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>", "<filename>",
                                   "<gh_stars>", "<issue_start>", "<issue_comment>", "<issue_closed>",
                                   "<jupyter_start>", "<jupyter_text>", "<jupyter_code>", "<jupyter_output>",
                                   "<empty_output>", "<commit_before>", "<commit_msg>", "<commit_after>", "<reponame>",
                                   "<|start_of_role|>", "<|end_of_role|>", "<|tool_call|>"])
_GRANITE33 = {**_GRANITE31, "additional": _GRANITE31["additional"] + ["<|start_of_cite|>", "<|end_of_cite|>",
                                                                      "<|start_of_plugin|>", "<|end_of_plugin|>"]}

FAMILIES: list[Family] = [
    Family("qwen2.5", "Qwen1.5 / Qwen2 / Qwen2.5", "Qwen2ForCausalLM", "qwen2", "qwen2", "qwen2.5", _QWEN,
           tokenizer_class="Qwen2Tokenizer"),
    Family("qwen3", "Qwen3", "Qwen3ForCausalLM", "qwen3", "qwen2", "qwen3",
           {**_QWEN, "additional": _QWEN["additional"] + ["<think>", "</think>"]}, tokenizer_class="Qwen2Tokenizer"),
    # Qwen1.5-MoE-A2.7B-Chat / Qwen2-57B-A14B-Instruct: Qwen2's tokenizer and specials, Qwen1.5/Qwen2's ChatML template
    Family("qwen2-moe", "Qwen2-MoE (Qwen1.5-MoE-A2.7B, Qwen2-57B-A14B)", "Qwen2MoeForCausalLM", "qwen2-moe", "qwen2",
           "qwen2", _QWEN, tokenizer_class="Qwen2Tokenizer"),
    # Qwen3-30B-A3B / 235B-A22B: Qwen3's tokenizer, specials and chat template (as published with them)
    Family("qwen3-moe", "Qwen3-MoE (30B-A3B, 235B-A22B)", "Qwen3MoeForCausalLM", "qwen3-moe", "qwen2", "qwen3",
           {**_QWEN, "additional": _QWEN["additional"] + ["<think>", "</think>"]}, tokenizer_class="Qwen2Tokenizer"),
    # gpt-oss-20b / 120b: harmony format on o200k (o200k_harmony: o200k_base plus the harmony specials);
    # <|return|> ends a final answer (EOS), <|end|> every other message; generation_config also stops on
    # <|endoftext|> and <|call|>. Published as MXFP4: ducktune dequantizes the experts on load.
    Family("gpt-oss", "gpt-oss (20b, 120b)", "GptOssForCausalLM", "gpt-oss", "o200k-bpe", "gpt-oss",
           _specials(bos="<|startoftext|>", eos="<|return|>", pad="<|endoftext|>",
                     additional=["<|startoftext|>", "<|endoftext|>", "<|return|>", "<|constrain|>", "<|channel|>",
                                 "<|start|>", "<|end|>", "<|message|>", "<|call|>", "<|endofprompt|>"]),
           stops=("<|endoftext|>", "<|call|>"),
           note="trains LoRA on the attention projections; the experts (3-D weights) stay frozen"),
    Family("qwen3.5", "Qwen3.5 (0.8B-9B, text)", "Qwen3_5ForConditionalGeneration", "qwen3.5", "qwen35", "qwen3.5",
           {**_QWEN, "additional": _QWEN["additional"] + ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                                                          "<|video_pad|>"]},
           tokenizer_class="Qwen3_5Tokenizer", stops=("<|endoftext|>",),
           note="text fine-tuning of the multimodal checkpoint: the vision tower is left out"),
    Family("deepseek-r1-distill-qwen", "DeepSeek-R1-Distill-Qwen", "Qwen2ForCausalLM", "qwen2", "deepseek-r1-qwen",
           "deepseek-r1", _DEEPSEEK_R1, tokenizer_class="LlamaTokenizerFast"),
    # Llama 3.1 8B with DeepSeek's specials in Llama 3's reserved slots (BOS added, as Llama 3's) and R1's template,
    # which writes BOS itself; prompted after <｜Assistant｜> like the Qwen distills (data/template.py).
    Family("deepseek-r1-distill-llama", "DeepSeek-R1-Distill-Llama", "LlamaForCausalLM", "llama3.1", "llama-bpe",
           "deepseek-r1-llama", _DEEPSEEK_R1, tokenizer_class="LlamaTokenizerFast"),
    # DeepSeek's own Llama-graph models, each with its byte-level tokenizer (llama.cpp pre "deepseek-coder" /
    # "deepseek-llm"): Coder Instruct ends turns with <|EOT|> (its EOS), LLM Chat with <｜end▁of▁sentence｜>
    Family("deepseek-coder", "DeepSeek-Coder 1.3B / 6.7B / 33B Instruct", "LlamaForCausalLM", "deepseek-coder",
           "deepseek-coder-bpe", "deepseek-coder",
           _specials(bos="<｜begin▁of▁sentence｜>", eos="<|EOT|>", pad="<｜end▁of▁sentence｜>",
                     additional=["<｜end▁of▁sentence｜>", "<｜fim▁hole｜>", "<｜fim▁begin｜>", "<｜fim▁end｜>", "<pad>",
                                 "<|User|>", "<|Assistant|>", "<|EOT|>"]),
           tokenizer_class="LlamaTokenizerFast"),
    Family("deepseek-llm", "DeepSeek-LLM 7B / 67B Chat", "LlamaForCausalLM", "deepseek-llm", "deepseek-llm-bpe",
           "deepseek-v2", _specials(bos="<｜begin▁of▁sentence｜>", eos="<｜end▁of▁sentence｜>"),
           tokenizer_class="LlamaTokenizerFast"),
    # DeepSeek-V2-Lite-Chat: DeepSeek LLM's tokenizer and User:/Assistant: template on the MLA + MoE model
    Family("deepseek-v2-lite", "DeepSeek-V2-Lite-Chat (16B MoE)", "DeepseekV2ForCausalLM", "deepseek-v2-lite",
           "deepseek-llm-bpe", "deepseek-v2", _specials(bos="<｜begin▁of▁sentence｜>", eos="<｜end▁of▁sentence｜>"),
           tokenizer_class="LlamaTokenizerFast"),
    Family("llama3", "Llama-3 / 3.1 / 3.2", "LlamaForCausalLM", "llama3", "llama-bpe", "llama3.1",
           _specials(bos="<|begin_of_text|>", eos="<|eot_id|>", pad="<|finetune_right_pad_id|>",
                     additional=["<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                                 "<|eom_id|>", "<|python_tag|>", "<|finetune_right_pad_id|>"])),
    Family("llama2-chat", "Llama-2-chat", "LlamaForCausalLM", "llama", "llama-spm", "llama2", _SPM,
           tokenizer_class="LlamaTokenizer"),
    Family("tinyllama-chat", "TinyLlama-chat (Zephyr template)", "LlamaForCausalLM", "llama", "llama-spm", "zephyr",
           _SPM, tokenizer_class="LlamaTokenizer"),
    Family("yi-1.5", "Yi-1.5-chat", "LlamaForCausalLM", "llama", "llama-spm", "yi",
           _specials(bos="<|startoftext|>", eos="<|im_end|>", pad="<unk>", unk="<unk>",
                     additional=["<|im_start|>", "<|im_end|>", "<|endoftext|>"]), tokenizer_class="LlamaTokenizer"),
    # Mixtral-8x7B-Instruct-v0.1 (and 8x22B v0.1): Mistral v0.1's SentencePiece tokenizer; its template takes a
    # system message into the first [INST]
    Family("mixtral", "Mixtral 8x7B / 8x22B Instruct", "MixtralForCausalLM", "mixtral", "llama-spm", "mixtral", _SPM,
           tokenizer_class="LlamaTokenizer"),
    Family("mistral-v0.1", "Mistral-7B-Instruct v0.1 / v0.2", "MistralForCausalLM", "mistral", "llama-spm",
           "mistral-v1", _SPM, note="no system role: a system prompt is refused by the template",
           tokenizer_class="LlamaTokenizer"),
    Family("mistral-v0.3", "Mistral-7B-Instruct v0.3", "MistralForCausalLM", "mistral", "mistral-v3-spm",
           "mistral-v3", {**_SPM, "additional": ["[INST]", "[/INST]"]}, tokenizer_class="LlamaTokenizer"),
    Family("mistral-nemo", "Mistral-Nemo-Instruct", "MistralForCausalLM", "mistral-nemo", "tekken", "mistral-nemo",
           {**_SPM, "additional": ["[INST]", "[/INST]"]}),
    # Ministral 3: the multimodal checkpoint's language model, Tekken with the control tokens its template writes
    # (pad <pad>: config.json's pad_token_id 11). With no system prompt the template writes Mistral's default one.
    Family("ministral3", "Ministral 3 3B/8B/14B Instruct 2512 (text)", "Mistral3ForConditionalGeneration",
           "ministral3", "tekken", "ministral3",
           {**_SPM, "pad": "<pad>", "additional": ["[INST]", "[/INST]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
                                                   "[TOOL_RESULTS]", "[/TOOL_RESULTS]", "[TOOL_CALLS]", "[IMG]",
                                                   "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[ARGS]"]},
           note="text fine-tuning of the multimodal checkpoint (the -BF16 repositories: the Instruct ones are FP8); "
                "the vision tower is left out of the GGUF"),
    # Mistral Small 3.1 / 3.2 (Magistral / Devstral Small share the layout): Ministral 3's multimodal class with a
    # plain mistral text_config (llama.cpp's mistral3, no YaRN), Tekken with the control tokens 3.2's template writes
    Family("mistral-small3", "Mistral Small 3.1 / 3.2 24B Instruct (text)", "Mistral3ForConditionalGeneration",
           "mistral-small3", "tekken", "mistral-small3.2",
           {**_SPM, "pad": "<pad>", "additional": ["[INST]", "[/INST]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
                                                   "[TOOL_RESULTS]", "[/TOOL_RESULTS]", "[TOOL_CALLS]", "[IMG]",
                                                   "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[TOOL_CONTENT]",
                                                   "[ARGS]", "[CALL_ID]"]},
           note="text fine-tuning of the multimodal checkpoint; the vision tower is left out of the GGUF"),
    Family("gemma", "Gemma / Gemma 1.1 / CodeGemma", "GemmaForCausalLM", "gemma", "gemma-spm", "gemma", _GEMMA,
           note="no system role in the template", tokenizer_class="GemmaTokenizer"),
    Family("gemma2", "Gemma 2", "Gemma2ForCausalLM", "gemma2", "gemma-spm", "gemma2",
           _GEMMA,
           note="no system role in the template", tokenizer_class="GemmaTokenizer"),
    Family("gemma3", "Gemma 3 (text)", "Gemma3ForCausalLM", "gemma3", "gemma-spm", "gemma3",
           _GEMMA, tokenizer_class="GemmaTokenizer"),
    Family("gemma3-mm", "Gemma 3 4B/12B/27B (text of the multimodal checkpoint)", "Gemma3ForConditionalGeneration",
           "gemma3-mm", "gemma-spm", "gemma3", _GEMMA, tokenizer_class="GemmaTokenizer",
           note="text only: the GGUF holds the language model, not the vision tower"),
    # Gemma 4's vocabulary keeps Gemma's first five tokens (<pad> <eos> <bos> <unk> <mask>); its turns are <|turn>
    # ... <turn|>, the tokenizer's EOS. generation_config also stops at <eos> (1) and <|tool_response> (50), which the
    # template writes after a tool call the model made.
    Family("gemma4", "Gemma 4 E2B/E4B (text of the multimodal checkpoint)", "Gemma4ForConditionalGeneration",
           "gemma4", "gemma-spm", "gemma4",
           _specials(bos="<bos>", eos="<turn|>", pad="<pad>", unk="<unk>",
                     additional=["<eos>", "<mask>", "<|turn>", "<turn|>", "<|channel>", "<channel|>", "<|think|>",
                                 "<|tool>", "<tool|>", "<|tool_call>", "<tool_call|>", "<|tool_response>",
                                 "<tool_response|>", '<|"|>', "<|image|>", "<|audio|>"]),
           tokenizer_class="GemmaTokenizer", stops=("<eos>", "<|tool_response>"),
           note="text only: the GGUF holds the language model, not the vision and audio towers"),
    # Gemma 3n: Gemma 3's tokenizer pipeline, specials and turn format (its template adds audio/image soft tokens).
    # The stand-in is the language model alone (Gemma3nForCausalLM): the published class's vision tower needs timm.
    Family("gemma3n", "Gemma 3n E2B/E4B (text of the multimodal checkpoint)", "Gemma3nForCausalLM", "gemma3n",
           "gemma-spm", "gemma3n", _GEMMA, tokenizer_class="GemmaTokenizer",
           note="text only: the GGUF holds the language model, not the vision and audio towers"),
    Family("phi3", "Phi-3 / Phi-3.5", "Phi3ForCausalLM", "phi3", "phi3-spm", "phi3",
           _specials(bos="<s>", eos="<|endoftext|>", pad="<|endoftext|>", unk="<unk>",
                     additional=["</s>", "<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]),
           tokenizer_class="LlamaTokenizer"),
    Family("phi4", "Phi-4", "Phi3ForCausalLM", "phi3", "phi4-bpe", "phi4",
           _specials(bos="<|endoftext|>", eos="<|im_end|>", pad="<|endoftext|>",
                     additional=["<|endoftext|>", "<|im_start|>", "<|im_sep|>", "<|im_end|>"]),
           tokenizer_class="GPT2Tokenizer"),
    # Phi-4-mini: Phi-3's class and turn markers on tiktoken's o200k vocabulary; generation_config ends turns
    # on <|end|> as well as EOS.
    Family("phi4-mini", "Phi-4-mini-instruct", "Phi3ForCausalLM", "phi4-mini", "o200k-bpe", "phi4-mini",
           _specials(bos="<|endoftext|>", eos="<|endoftext|>", pad="<|endoftext|>", unk="<|endoftext|>",
                     additional=["<|endofprompt|>", "<|assistant|>", "<|end|>", "<|user|>", "<|system|>", "<|tool|>",
                                 "<|/tool|>", "<|tool_call|>", "<|/tool_call|>", "<|tool_response|>", "<|tag|>"]),
           tokenizer_class="GPT2Tokenizer", stops=("<|end|>",)),
    Family("glm4", "GLM-4 (transformers-native)", "GlmForCausalLM", "glm", "glm4-bpe", "glm4",
           _specials(eos="<|endoftext|>", pad="<|endoftext|>",
                     additional=["<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>",
                                 "<|user|>", "<|assistant|>", "<|observation|>"]),
           stops=("<|user|>", "<|observation|>")),
    Family("glm4-0414", "GLM-4-0414 / GLM-Z1", "Glm4ForCausalLM", "glm4-0414", "glm4-bpe", "glm4-0414",
           _specials(eos="<|endoftext|>", pad="<|endoftext|>",
                     additional=["<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>",
                                 "<|user|>", "<|assistant|>", "<|observation|>"]),
           stops=("<|user|>", "<|observation|>")),
    # The Llama 3.2 tokenizer (its pipeline and <|begin_of_text|>) with ChatML turns; its template prints no BOS.
    Family("smollm3", "SmolLM3", "SmolLM3ForCausalLM", "smollm3", "llama-bpe", "smollm3",
           _specials(bos="<|begin_of_text|>", eos="<|im_end|>", pad="<|finetune_right_pad_id|>",
                     additional=["<|end_of_text|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>",
                                 "<|finetune_right_pad_id|>"]),
           note="its template thinks by default; ducktune trains non-thinking unless model.enable_thinking: true"),
    # Hunyuan 0.5B/1.8B/4B: <｜hy_...｜> turns; the user turn ends with the assistant header, an answer with EOS.
    Family("hunyuan", "Hunyuan dense (0.5B / 1.8B / 4B / 7B)", "HunYuanDenseV1ForCausalLM", "hunyuan", "hunyuan-bpe",
           "hunyuan", _specials(bos="<｜hy_begin▁of▁sentence｜>", eos="<｜hy_place▁holder▁no▁2｜>",
                                pad="<｜hy_place▁holder▁no▁2｜>",
                                additional=["<｜hy_User｜>", "<｜hy_Assistant｜>", "<｜hy_place▁holder▁no▁3｜>"])),
    Family("granite", "Granite 3.0 / 3.1 / 3.3 (dense)", "GraniteForCausalLM", "granite", "smollm", "granite3.3",
           _GRANITE33, tokenizer_class="GPT2Tokenizer"),
    # Granite 3.0/3.1 MoE: the dense Granite 3's tokenizer and specials; its own (3.1) template as published
    Family("granite-moe", "Granite 3.0 / 3.1 MoE (1B-A400M, 3B-A800M)", "GraniteMoeForCausalLM", "granite-moe", "smollm",
           "granite3.1-moe", _GRANITE31, tokenizer_class="GPT2Tokenizer"),
    # Granite 4.0 (dense: granite-4.0-micro): GraniteMoeHybrid with attention layers only; its tokenizer is
    # cl100k converted (as OLMo 2's dolma2) with Granite's role markers; the template adds a default system turn.
    Family("granite4", "Granite 4.0 micro (dense)", "GraniteMoeHybridForCausalLM", "granite4", "phi4-bpe", "granite4",
           _GRANITE4, tokenizer_class="GPT2Tokenizer"),
    # Granite 4.0-H (granite-4.0-h-micro / -h-1b / -h-350m; h-tiny / h-small add experts): the same tokenizer and
    # template as Granite 4.0, with Mamba-2 layers around NoPE attention (llama.cpp's granitehybrid)
    Family("granite4h", "Granite 4.0-H micro / 1B / 350M (hybrid Mamba-2)", "GraniteMoeHybridForCausalLM", "granite4h",
           "phi4-bpe", "granite4", _GRANITE4, tokenizer_class="GPT2Tokenizer",
           note="Mamba-2 layers train on padded batches"),
    # Falcon-H1 (0.5B / 1.5B / 1.5B-Deep / 3B / 7B / 34B Instruct): a Mamba-2 mixer beside attention in every layer;
    # its byte-level BPE is on Llama 3's pipeline (llama.cpp's converter names it "falcon-h1" and runs it as Llama
    # 3's), ChatML turns after BOS <|begin_of_text|>
    Family("falcon-h1", "Falcon-H1 0.5B / 1.5B / 3B / 7B Instruct (hybrid Mamba-2)", "FalconH1ForCausalLM",
           "falcon-h1", "llama-bpe", "falcon-h1",
           _specials(bos="<|begin_of_text|>", eos="<|end_of_text|>", pad="<|pad|>",
                     additional=["<|im_start|>", "<|im_end|>"]),
           note="Mamba-2 mixers in every layer: trains on padded batches"),
    # NVIDIA Nemotron-Nano-9B-v2 / 12B-v2: Mamba-2, attention and MLP layers; Mistral Nemo's Tekken tokenizer (BOS <s>
    # added) with NVIDIA's turn markers in its control-token slots (<SPECIAL_10> system, <SPECIAL_11> user and
    # assistant, <SPECIAL_12> ends a turn, its EOS); /think and /no_think in a system or user turn switch reasoning
    Family("nemotron-h", "NVIDIA-Nemotron-Nano-9B-v2 / 12B-v2 (hybrid Mamba-2)", "NemotronHForCausalLM", "nemotron-h",
           "tekken", "nemotron-h",
           _specials(bos="<s>", eos="<SPECIAL_12>", unk="<unk>", additional=["</s>", "<SPECIAL_10>", "<SPECIAL_11>"]),
           note="Mamba-2 layers train on padded batches; /no_think in the system prompt turns reasoning off"),
    # OLMo 2's dolma2 tokenizer is cl100k_base converted from tiktoken (Phi-4's pipeline) with its own specials;
    # its chat markers <|user|> <|assistant|> <|system|> are plain text, and the template writes BOS itself.
    Family("olmo2", "OLMo 2 Instruct", "Olmo2ForCausalLM", "olmo2", "phi4-bpe", "olmo2",
           _specials(bos="<|endoftext|>", eos="<|endoftext|>", pad="<|pad|>", unk="<|endoftext|>",
                     additional=["<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|im_start|>", "<|im_end|>",
                                 "<|endofprompt|>"]),
           tokenizer_class="GPT2Tokenizer"),
    # OLMo 3 keeps dolma2 (<|endoftext|> is BOS and EOS) but chats in ChatML: <|im_start|>/<|im_end|> are
    # special, a default system prompt is written when none is given, and the last answer ends with EOS.
    Family("olmo3", "OLMo 3 / 3.1 Instruct", "Olmo3ForCausalLM", "olmo3", "phi4-bpe", "olmo3",
           _specials(bos="<|endoftext|>", eos="<|endoftext|>", pad="<|pad|>", unk="<|endoftext|>",
                     additional=["<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|im_start|>", "<|im_end|>",
                                 "<|endofprompt|>"]),
           tokenizer_class="GPT2Tokenizer",
           note="sliding-window layers: trains on padded batches (packing is refused by the isolation proof)"),
    # OLMoE-1B-7B-0125-Instruct: GPT-NeoX-20B's tokenizer (AI2's PII variant, vocab 50280 padded to 50304) whose
    # tokenizer_config names id 50279 |||IP_ADDRESS||| as BOS and EOS; OLMo 2's Tulu 3 template (plain-text markers)
    Family("olmoe", "OLMoE-1B-7B-0125-Instruct", "OlmoeForCausalLM", "olmoe", "gptneox-bpe", "olmo2",
           _specials(bos="|||IP_ADDRESS|||", eos="|||IP_ADDRESS|||", pad="<|padding|>", additional=["<|endoftext|>"]),
           tokenizer_class="GPTNeoXTokenizer"),
    # LFM2's byte-level BPE is Llama 3's pipeline (cl100k regex, whole words kept, BOS added) with its own
    # specials at ids 0-13; llama.cpp names it "lfm2" and runs it as Llama 3's.
    Family("lfm2", "Liquid LFM2 (350M-2.6B)", "Lfm2ForCausalLM", "lfm2", "llama-bpe", "lfm2",
           _LFM2,
           note="short-convolution layers: trains on padded batches (packing is refused by the isolation proof)"),
    # LFM2-8B-A1B: LFM2's tokenizer, specials and template (llama.cpp ships its template as LFM2's)
    Family("lfm2-moe", "LFM2-MoE (LFM2-8B-A1B)", "Lfm2MoeForCausalLM", "lfm2-moe", "llama-bpe", "lfm2",
           _LFM2,
           note="short-convolution layers: trains on padded batches (packing is refused by the isolation proof)"),
    # Falcon3: Llama's class with Falcon's own byte-level BPE (specials >>TITLE<< ... at the front, <|pad|>);
    # its template ends an answer with <|endoftext|> (EOS, bos_token_id = eos_token_id = 11 in config.json).
    Family("falcon3", "Falcon3 1B / 3B / 7B / 10B Instruct", "LlamaForCausalLM", "falcon3", "falcon3-bpe", "falcon3",
           _specials(eos="<|endoftext|>", pad="<|pad|>",
                     additional=[">>TITLE<<", ">>ABSTRACT<<", ">>INTRODUCTION<<", ">>SUMMARY<<", ">>COMMENT<<",
                                 ">>ANSWER<<", ">>QUESTION<<", ">>DOMAIN<<", ">>EMAIL_ADDRESS<<", ">>IP_ADDRESS<<",
                                 "<|startoftext|>", "<|endoftext|>", "<|pad|>"])),
    Family("internlm2", "InternLM2 / 2.5-chat", "InternLM2ForCausalLM", "internlm2", "internlm2-spm", "internlm2",
           {**_SPM, "additional": ["<|im_start|>", "<|im_end|>"]}, remote_code=True,
           note="its modelling code ships with the model (model.trust_remote_code: true)"),
    # transformers 5 runs InternLM3 as Llama and reads its tokenizer.model with TokenizersBackend
    # (InternLM2's SentencePiece pipeline); the published template is InternLM2's ChatML with BOS.
    Family("internlm3", "InternLM3-Instruct", "InternLM3ForCausalLM", "internlm3", "internlm2-spm", "internlm2",
           {**_SPM, "pad": "</s>", "additional": ["<|im_start|>", "<|im_end|>"]},
           tokenizer_class="InternLM3Tokenizer", stops=("<|im_end|>",)),
    # ERNIE 4.5's turns end with <|end_of_sentence|> (the template's sep_token), which llama.cpp does not
    # know as end-of-generation by itself; </s> stays EOS as published (generation_config: eos 2).
    Family("ernie4.5", "ERNIE 4.5 (0.3B dense)", "Ernie4_5ForCausalLM", "ernie4.5", "ernie45-spm", "ernie4.5",
           _ERNIE45,
           tokenizer_class="Ernie4_5_Tokenizer"),
    # ERNIE-4.5-21B-A3B-PT: the dense ERNIE 4.5's tokenizer, specials and template
    Family("ernie4.5-moe", "ERNIE 4.5 MoE (21B-A3B)", "Ernie4_5_MoeForCausalLM", "ernie4.5-moe", "ernie45-spm",
           "ernie4.5", _ERNIE45,
           tokenizer_class="Ernie4_5_Tokenizer"),
    Family("bloom", "BLOOM (Firefly)", "BloomForCausalLM", "bloom", "bloom", "firefly",
           _specials(bos="<s>", eos="</s>", pad="<pad>", unk="<unk>"),
           note="no chat template of its own: ducktune ships the Firefly format",
           tokenizer_class="BloomTokenizerFast"),
    Family("phi2", "Phi-2 / Phi-1.5", "PhiForCausalLM", "phi2", "codegen-bpe", "phi2-qa",
           _specials(bos="<|endoftext|>", eos="<|endoftext|>", unk="<|endoftext|>"),
           note="no chat template of its own: set model.chat_template: phi2-qa (ducktune's Instruct:/Output: format)",
           tokenizer_class="CodeGenTokenizer"),
    # GPT-2 and Pythia: base models without a chat format; <|endoftext|> is BOS, EOS and UNK as published (GPT-2 has no
    # pad token; GPTNeoXTokenizer pads with <|padding|>), and ducktune's alpaca format ends each answer with it.
    Family("gpt2", "GPT-2 / DistilGPT2", "GPT2LMHeadModel", "gpt2", "exaone4-bpe", "alpaca",
           _specials(bos="<|endoftext|>", eos="<|endoftext|>", unk="<|endoftext|>"),
           note="no chat template of its own: set model.chat_template: alpaca (ducktune's ### Instruction: / "
                "### Response: format)",
           tokenizer_class="GPT2Tokenizer"),
    Family("pythia", "Pythia / GPT-NeoX", "GPTNeoXForCausalLM", "pythia", "gptneox-bpe", "alpaca",
           _specials(bos="<|endoftext|>", eos="<|endoftext|>", pad="<|padding|>", unk="<|endoftext|>"),
           note="no chat template of its own: set model.chat_template: alpaca (ducktune's ### Instruction: / "
                "### Response: format)",
           tokenizer_class="GPTNeoXTokenizer"),
    # generation_config: eos 361 = [|endofturn|], the end of every turn
    Family("exaone4", "EXAONE 4.0 (1.2B / 32B)", "Exaone4ForCausalLM", "exaone4", "exaone4-bpe", "exaone4",
           _specials(bos="[BOS]", eos="[|endofturn|]", pad="[PAD]", unk="[UNK]",
                     additional=["[|system|]", "[|user|]", "[|assistant|]", "[|tool|]", "<think>", "</think>"]),
           tokenizer_class="GPT2Tokenizer"),
    # EXAONE 3.0 / 3.5 / Deep: transformers 5 runs model_type exaone as LlamaForCausalLM without the remote code its
    # auto_map names; GPT2Tokenizer over a digits-then-byte-level tokenizer.json, no BOS added; generation_config eos
    # 361 = [|endofturn|]
    Family("exaone3.5", "EXAONE 3.0 / 3.5 (2.4B / 7.8B / 32B)", "ExaoneForCausalLM", "exaone", "smollm", "exaone3.5",
           _specials(bos="[BOS]", eos="[|endofturn|]", pad="[PAD]", unk="[UNK]",
                     additional=["[|system|]", "[|user|]", "[|assistant|]", "[|endofturn|]"]),
           tokenizer_class="GPT2Tokenizer",
           published_keys={"num_hidden_layers": "num_layers", "rms_norm_eps": "layer_norm_epsilon",
                           "hidden_act": "activation_function"}),
    # Cohere's tokenizer (CohereTokenizer rebuilds its NFC + digits + byte-level pipeline, BOS added) and turn
    # tokens; Aya's template prints BOS, Command R7B's none (its chat prompts have none). R7B's answers
    # end <|END_RESPONSE|><|END_OF_TURN_TOKEN|>; generation_config's only EOS is <|END_OF_TURN_TOKEN|> in both.
    Family("aya", "Aya Expanse / Aya 23 (8B)", "CohereForCausalLM", "cohere", "command-r-bpe", "aya-expanse",
           _COHERE, tokenizer_class="CohereTokenizer"),
    Family("command-r7b", "Command R7B 12-2024", "Cohere2ForCausalLM", "cohere2", "command-r-bpe", "command-r7b",
           {**_COHERE, "additional": _COHERE["additional"] + [
               "<|START_RESPONSE|>", "<|END_RESPONSE|>", "<|START_THINKING|>", "<|END_THINKING|>", "<|START_ACTION|>",
               "<|END_ACTION|>", "<|START_TOOL_RESULT|>", "<|END_TOOL_RESULT|>"]},
           tokenizer_class="CohereTokenizer",
           note="sliding-window layers: trains on padded batches (packing is refused from its layer kinds)"),
    # StableLM 2 (Arcade100k tokenizer, ChatML; stablelm-2-zephyr-1_6b shares class and tokenizer with Zephyr's
    # template, stablelm-zephyr-3b GPT-NeoX's tokenizer): <|endoftext|> is BOS, EOS and pad as published.
    Family("stablelm2", "StableLM 2 1.6B chat / Zephyr", "StableLmForCausalLM", "stablelm2", "stablelm2-bpe",
           "stablelm2", _specials(bos="<|endoftext|>", eos="<|endoftext|>", pad="<|endoftext|>",
                                  additional=["<|im_start|>", "<|im_end|>", "<|pause|>", "<|reg0|>"]),
           tokenizer_class="GPT2TokenizerFast"),
    # Nemotron-Mini's SentencePiece 256k vocabulary (Llama-2 pipeline: dummy prefix, BOS <s> added) with NeMo's
    # <extra_id_N> turn markers; its template closes an answer with a newline only, so EOS is trained after it.
    Family("nemotron-mini", "Nemotron-Mini-4B-Instruct", "NemotronForCausalLM", "nemotron-mini", "llama-spm",
           "nemotron-mini", _specials(bos="<s>", eos="</s>", pad="<pad>", unk="<unk>",
                                      additional=["<extra_id_0>", "<extra_id_1>"])),
    # Apertus: Mistral Nemo's Tekken tokenizer (BOS <s> added) with Apertus' turn markers in its control-token slots;
    # the template closes an answer with <|assistant_end|> (EOS) only before the next user turn.
    Family("apertus", "Apertus (8B / 70B Instruct)", "ApertusForCausalLM", "apertus", "tekken", "apertus",
           _specials(bos="<s>", eos="<|assistant_end|>", pad="<pad>", unk="<unk>",
                     additional=["</s>", "<|system_start|>", "<|system_end|>", "<|developer_start|>",
                                 "<|developer_end|>", "<|user_start|>", "<|user_end|>", "<|assistant_start|>",
                                 "<|assistant_end|>", "<|inner_prefix|>", "<|inner_suffix|>", "<|tools_prefix|>",
                                 "<|tools_suffix|>"]),
           note="its template prints today's date in the default system prompt"),
    # MiniCPM3: a SentencePiece vocabulary read through tokenizer.json (Llama-2 pipeline, BOS <s> added, as the
    # published add_bos_token true), ChatML turns ending <|im_end|> (EOS); generation_config also stops on </s>.
    # The published tokenizer_config names remote code (MiniCPMTokenizer); transformers 5 reads tokenizer.json.
    Family("minicpm3", "MiniCPM3-4B", "MiniCPM3ForCausalLM", "minicpm3", "llama-spm", "minicpm3",
           _specials(bos="<s>", eos="<|im_end|>", unk="<unk>",
                     additional=["</s>", "<|im_end|>", "<|im_start|>", "<|tool_call|>", "<|execute_start|>",
                                 "<|execute_end|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>"]),
           tokenizer_class="MiniCPMTokenizer", stops=("</s>",)),
    Family("smollm2", "SmolLM2 (built in)", "LlamaForCausalLM", "llama", "smollm", "chatml-smollm2",
           _specials(bos="<|im_start|>", eos="<|im_end|>", pad="<|im_end|>", unk="<|endoftext|>",
                     additional=["<|endoftext|>", "<|im_start|>", "<|im_end|>"]), tokenizer_class="GPT2Tokenizer"),
]
BY_ID = {family.id: family for family in FAMILIES}


def family(family_id: str) -> Family:
    try:
        return BY_ID[family_id]
    except KeyError:
        raise ModelError(f"unknown model family {family_id!r}; known: {', '.join(BY_ID)}") from None


def template_text(template_id: str) -> str:
    """A chat template shipped with ducktune (resources/templates/<id>.jinja)."""
    from ducktune.models.loading import bundled_template

    text = bundled_template(template_id)
    if text is None:
        raise ModelError(f"no bundled chat template {template_id!r}")
    return text


def build_standin(family_id: str, out_dir: str | Path, seed: int = 0, embedding_scale: float = 8.0) -> Path:
    """Write the family's tiny stand-in model folder (config, safetensors, tokenizer, chat template).

    The output embeddings are scaled up (`embedding_scale`) so the random model's next-token choices have clear
    margins: greedy answers then survive f16 rounding, and a mismatch in llama.cpp is a real fault,
    not a near-tie (see shared/README.md).
    """
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, GenerationConfig

    from ducktune.models.standin_configs import internlm2_config, tiny_config
    from ducktune.models.standin_tokenizers import build_tokenizer

    spec = family(family_id)
    tokenizer = build_tokenizer(spec.tokenizer, spec.specials, template_text(spec.template))
    ids = {name: tokenizer.convert_tokens_to_ids(spec.specials[name]) if spec.specials.get(name) else None
           for name in ("bos", "eos", "pad")}
    if spec.remote_code:  # only InternLM2 among the families
        config = internlm2_config(len(tokenizer), ids["bos"], ids["eos"], ids["pad"])
        return _write_remote_code_standin(Path(out_dir), spec, config, tokenizer)
    config = tiny_config(spec.arch, len(tokenizer), ids["bos"], ids["eos"], ids["pad"])
    torch.manual_seed(seed)
    if spec.model_class.endswith("ForCausalLM"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    else:  # a multimodal class as published (Qwen3.5): its vision tower is saved too
        model = getattr(transformers, spec.model_class)(config).float()
    wake_zero_scales(model)
    _widen_logit_margins(model, config, embedding_scale)
    stop_ids = [tokenizer.convert_tokens_to_ids(token) for token in spec.stops]
    model.generation_config = GenerationConfig(bos_token_id=ids["bos"], pad_token_id=ids["pad"],
                                               eos_token_id=[ids["eos"], *stop_ids] if stop_ids else ids["eos"])
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        _name_published_class(tmp, spec)
        _save_tokenizer(tokenizer, tmp, spec.tokenizer_class)
    return out


def _name_published_class(folder: Path, spec: Family) -> None:
    """config.json names the published class: transformers runs InternLM3 as LlamaForCausalLM and saves
    that name, while the published config names InternLM3ForCausalLM and the auto_map of the
    remote code it shipped before transformers adopted it (and, for EXAONE 3.x, its own key names)."""
    import json

    path = folder / "config.json"
    values = json.loads(path.read_text(encoding="utf-8"))
    if values.get("architectures") != [spec.model_class]:
        values["architectures"] = [spec.model_class]
        values["auto_map"] = _auto_map(spec)
        values = {spec.published_keys.get(key, key): value for key, value in values.items()}
        path.write_text(json.dumps(values, indent=2), encoding="utf-8")


def _auto_map(spec: Family) -> dict:
    config_class = spec.model_class.replace("ForCausalLM", "Config")
    return {"AutoConfig": f"configuration_{spec.arch}.{config_class}",
            "AutoModelForCausalLM": f"modeling_{spec.arch}.{spec.model_class}"}


# the expert-selection biases (ERNIE 4.5 MoE's moe_statics, LFM2-MoE's buffer), zero at init
SELECTION_BIASES = ("moe_statics.e_score_correction_bias", "feed_forward.expert_bias")


def wake_zero_scales(model) -> None:
    """Gemma 3n's AltUp output scale starts at zero, which would switch its per-layer embedding path off in a
    random model: give it values around 1 so llama.cpp's reading of that path is tested too. Likewise the
    expert-selection biases: values of the router probabilities' spread, so they change which experts run."""
    import torch

    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if name.endswith("altup.correct_output_scale"):
                tensor.uniform_(0.5, 1.5)
            if name.endswith(SELECTION_BIASES):
                tensor.uniform_(-0.2, 0.2)


def _widen_logit_margins(model, config, scale: float) -> None:
    """Multiply the logits by `scale` (undoing a logit divisor such as Granite's logits_scaling, or a
    multiplier below 1 such as Cohere's logit_scale)."""
    import torch

    divisor = float(getattr(config, "logits_scaling", None) or 1.0) / float(getattr(config, "logit_scale", None) or 1.0)
    with torch.no_grad():
        if divisor != 1.0:
            # Through the final norm, not the tied embeddings: Granite's inputs are already multiplied
            # (embedding_multiplier) and its layer outputs damped (residual_multiplier), Cohere's parallel
            # blocks add onto the embedding unnormalised; larger embeddings would drown what the layers add,
            # and LoRA training could not move the loss.
            model.model.norm.weight.mul_(scale * divisor)
            return
        # Through the LM head (tied or not): input-side scaling would be undone by the first norm.
        model.get_output_embeddings().weight.mul_(scale)


def _save_tokenizer(tokenizer, folder: Path, tokenizer_class: str) -> None:
    import json

    tokenizer.save_pretrained(folder)
    path = folder / "tokenizer_config.json"
    values = json.loads(path.read_text(encoding="utf-8"))
    values["tokenizer_class"] = tokenizer_class
    path.write_text(json.dumps(values, indent=2, ensure_ascii=False), encoding="utf-8")


def _write_remote_code_standin(out: Path, spec: Family, config, tokenizer) -> Path:
    """Config and tokenizer only: the modelling code of a remote-code family lives in the model's
    own repository (not reachable offline), so there are no weights transformers could load."""
    import json

    values = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    values["architectures"] = [spec.model_class]
    values["auto_map"] = _auto_map(spec)
    with atomic_dir(out) as tmp:
        _save_tokenizer(tokenizer, tmp, spec.tokenizer_class)
        (tmp / "config.json").write_text(json.dumps(values, indent=2), encoding="utf-8")
    return out


def standin_dir(family_id: str, cache: Path | None = None, log=print) -> Path:
    """The family's stand-in in ducktune's cache (~/.cache/ducktune/standins), built on first use."""
    from ducktune.models.builtin import cache_root

    target = (cache or cache_root() / "standins") / family_id
    if not (target / "config.json").is_file():
        log(f"Building the {family_id} stand-in once: {target}")
        build_standin(family_id, target)
    return target
