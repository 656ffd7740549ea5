"""ducktune: fine-tune small chat LLMs on weak hardware, from a JSON file to Ollama."""

__version__ = "0.1.0"
