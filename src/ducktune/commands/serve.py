import os

from ducktune.commands import add_parser, port_number


def register(sub) -> None:
    p = add_parser(sub, "serve", "OpenAI-compatible API server for a run or an exported model",
                   "Serve a run (base model + adapter, unmerged), a merged model folder, or an export folder over the OpenAI "
                   "chat-completions API (GET /v1/models, POST /v1/chat/completions, streaming included), with "
                   "the run's chat template and stop tokens. Any OpenAI client works: the openai package, Dify, "
                   "Open WebUI. An export folder (or --gguf FILE) runs its GGUF with llama.cpp when llama-cpp-python is "
                   "installed (make verify-extra), prompted with the run's own template and tokenizer; otherwise "
                   "transformers answers, batching concurrent greedy requests. "
                   "Answers are greedy unless a request sets temperature. Binds 127.0.0.1 unless "
                   "--host says otherwise (with another host and no --api-key it warns). Request bodies over 8 MiB "
                   "get 413; malformed requests get a 4xx with OpenAI's error body.",
                   "  ducktune serve runs/quickstart\n"
                   "  ducktune serve runs/quickstart --base --port 8001\n"
                   "  ducktune serve runs/quickstart/export --host 0.0.0.0 --api-key sk-my-secret\n"
                   "  ducktune serve --gguf runs/quickstart/export/duckling-f16.gguf\n"
                   "  curl http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\\n"
                   "       -d '{\"model\": \"quickstart\", \"messages\": [{\"role\": \"user\", \"content\": \"Who are you?\"}]}'")
    p.add_argument("path", metavar="RUN_DIR|MODEL_DIR|EXPORT_DIR", nargs="?",
                   help="a run directory, a Hugging Face model folder, or an export folder")
    p.add_argument("--gguf", metavar="FILE", help="serve this GGUF file with llama.cpp (instead of a folder)")
    p.add_argument("--engine", default="auto", choices=["auto", "transformers", "llama.cpp"],
                   help="for an export folder: auto (default) runs its GGUF with llama.cpp when installed, "
                        "else merged/ with transformers")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=port_number, default=8000, help="port (default 8000)")
    p.add_argument("--api-key", default=os.environ.get("DUCKTUNE_API_KEY"),
                   help="require 'Authorization: Bearer KEY' on every request (default: $DUCKTUNE_API_KEY)")
    p.add_argument("--base", action="store_true",
                   help="also serve the untuned base model as NAME-base (LoRA runs: same weights, adapter off)")
    p.add_argument("--name", help="model id clients ask for (default: the run folder's name; an export folder's export name, e.g. duckling; with --gguf, the file's name without .gguf)")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"])
    p.add_argument("--max-queue", type=int, default=64,
                   help="requests that may wait per model before new ones get 429 (default 64)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ducktune.errors import UserError
    from ducktune.serve.server import serve

    if args.path is None and args.gguf is None:
        raise UserError("serve: give a run, model or export folder, or --gguf FILE")
    serve(args.path, host=args.host, port=args.port, api_key=args.api_key, with_base=args.base,
          name=args.name, device=args.device, max_queue=args.max_queue, gguf=args.gguf, engine=args.engine)
    return 0
