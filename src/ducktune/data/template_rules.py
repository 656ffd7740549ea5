"""What a chat template accepts, found by asking the template itself (no list of models).

Some templates (Llama 2, Mistral, Gemma...) raise on turns that do not alternate
user/assistant, or on a system message. Probing them with tiny conversations once lets
`ducktune data check` and training report such records precisely (file:line: field),
instead of failing inside the template.
"""

from __future__ import annotations

from ducktune.data.formats import NormalizeOptions

_USER = {"role": "user", "content": "Hello"}
_ASSISTANT = {"role": "assistant", "content": "Hi"}
_SYSTEM = {"role": "system", "content": "Be brief."}


def _renders(tokenizer, messages: list[dict]) -> bool:
    try:
        tokenizer.apply_chat_template(messages, tokenize=False)
    except Exception:  # jinja2 raise_exception(...) and template errors of any kind
        return False
    return True


def needs_alternation(tokenizer) -> bool:
    """True when the template refuses two user (or two assistant) turns in a row."""
    if not _renders(tokenizer, [_USER, _ASSISTANT]):
        return False
    return not (_renders(tokenizer, [_USER, _USER, _ASSISTANT])
                and _renders(tokenizer, [_USER, _ASSISTANT, _ASSISTANT]))


def accepts_system(tokenizer) -> bool:
    if not _renders(tokenizer, [_USER, _ASSISTANT]):
        return True
    return _renders(tokenizer, [_SYSTEM, _USER, _ASSISTANT])


def template_options(chat_format, tags=None) -> NormalizeOptions:
    """Normalize options that match `chat_format`'s template."""
    tokenizer = chat_format.tokenizer
    return NormalizeOptions(tags=tags, require_alternation=needs_alternation(tokenizer),
                            allow_system=accepts_system(tokenizer))
