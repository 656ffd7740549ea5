"""Chat with tuned models: one generation engine for the CLI, compare, reports, the API and the UI."""
