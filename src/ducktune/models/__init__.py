"""Base models: where they come from (built-in, local, Hugging Face, ModelScope) and how they load."""
