"""`ducktune serve`: an OpenAI-compatible API (FastAPI + uvicorn) over ChatEngine."""
