"""Generation speed of `ducktune serve`: llama.cpp path vs llama-cpp-python itself, and batching.

    .venv/bin/python bench/serve_speed.py [--export runs/quickstart/export] [--write]

Two numbers, each measured side by side (the compared runs alternate; medians reported):

- `serve_llamacpp_ratio`: `ducktune serve --gguf EXPORT/NAME-f16.gguf` (a real server process,
  one client, non-streaming, greedy) over llama-cpp-python's own generation of the same prompt
  token ids (`Llama.create_completion`, greedy) in this process, with the same thread count
  and context size; tok/s = completion tokens / wall time (prompt evaluation included on both
  sides, HTTP included on ours). Each repetition uses another prompt, the same on both sides,
  and both sides must produce the same number of tokens.
- `serve_concurrency_gain`: total tok/s of `ducktune serve EXPORT --engine transformers` (the
  HF path, which batches concurrent greedy requests) with 8 clients at once over the same 8
  requests sent one after another. The same figure for the llama.cpp path (one sequence at a
  time per model) is printed as `serve_concurrency_gain_llamacpp` for comparison.

`--write` saves bench/results/serve_speed.json and rewrites the section of bench/RESULTS.md
between the serve_speed markers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS_JSON = ROOT / "bench" / "results" / "serve_speed.json"
RESULTS_MD = ROOT / "bench" / "RESULTS.md"
BEGIN, END = "<!-- serve_speed:begin -->", "<!-- serve_speed:end -->"
PROMPTS = ["Write a short story about a duck who learns to swim.", "Explain how rain forms, step by step.",
           "Describe a walk through a forest in autumn.", "What are the benefits of reading books? Explain.",
           "Write a letter to a friend about your holiday.", "How does a bicycle work? Explain in detail.",
           "Tell me about the history of bread.", "Describe your favourite meal and how to cook it."]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(args: list[str], threads: int):
    """`python -m ducktune serve ARGS` as its own process; yields (url, model id)."""
    import httpx

    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(ROOT / "src"), PYTHONUNBUFFERED="1")
    log = open(ROOT / "bench" / "results" / f".serve-{port}.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "ducktune", "serve", *args, "--port", str(port)],
                               stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(1200):
            if process.poll() is not None:
                raise SystemExit(f"server exited: see {log.name}")
            with contextlib.suppress(httpx.HTTPError):
                models = httpx.get(url + "/v1/models", timeout=2).json()["data"]
                yield url, models[0]["id"]
                break
            time.sleep(0.5)
        else:
            raise SystemExit("server did not start in 10 min")
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
        Path(log.name).unlink(missing_ok=True)


def ask(url: str, model: str, prompt: str, max_tokens: int) -> int:
    """One greedy non-streaming request; its completion tokens."""
    import httpx

    reply = httpx.post(url + "/v1/chat/completions", timeout=600, json={
        "model": model, "max_tokens": max_tokens, "temperature": 0,
        "messages": [{"role": "user", "content": prompt}]})
    reply.raise_for_status()
    return reply.json()["usage"]["completion_tokens"]


def timed(fn) -> tuple[float, int]:
    started = time.perf_counter()
    tokens = fn()
    return time.perf_counter() - started, tokens


def llama_cpp_side(gguf: Path, tokenizer_dir: Path, system_prompt: str | None, threads: int):
    """llama-cpp-python's own generation: a function prompt -> completion tokens (greedy)."""
    import llama_cpp

    from ducktune.data.template import ChatFormat
    from ducktune.models.loading import load_tokenizer
    from ducktune.serve.llamacpp import MAX_CONTEXT, gguf_context_length

    chat_format = ChatFormat(load_tokenizer(tokenizer_dir), system_prompt=system_prompt)
    n_ctx = min(MAX_CONTEXT, gguf_context_length(gguf) or MAX_CONTEXT)
    llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=n_ctx, n_batch=512, n_threads=threads,
                          n_threads_batch=threads, verbose=False, seed=0)
    eog = set(chat_format.stop_token_ids)

    def generate(prompt: str, max_tokens: int) -> int:
        ids = chat_format.prompt_ids([{"role": "user", "content": prompt}])
        out = llm.create_completion(ids, max_tokens=max_tokens, temperature=0.0, top_k=0, top_p=1.0, min_p=0.0,
                                    repeat_penalty=1.0)
        n = out["usage"]["completion_tokens"]
        # create_completion does not count the end-of-turn token it stopped at; ducktune (and OpenAI) do.
        return n + (1 if out["choices"][0]["finish_reason"] == "stop" and n < max_tokens and eog else 0)
    return generate, llm


def measure_ratio(export: Path, gguf: Path, manifest: dict, reps: int, max_tokens: int, threads: int) -> dict:
    from ducktune.export.verify import llama_threads

    n_threads = llama_threads()
    own, llm = llama_cpp_side(gguf, export / manifest["files"]["merged"], manifest.get("system_prompt"), n_threads)
    rows = []
    with server(["--gguf", str(gguf)], threads) as (url, model):
        ask(url, model, "Hello", 8)  # warm both sides
        own("Hello", 8)
        for i in range(reps):
            prompt = PROMPTS[i % len(PROMPTS)]
            order = ["serve", "llama_cpp"] if i % 2 == 0 else ["llama_cpp", "serve"]
            got = {}
            for side in order:
                fn = (lambda: ask(url, model, prompt, max_tokens)) if side == "serve" else (lambda: own(prompt, max_tokens))
                got[side] = timed(fn)
            (ts, ns), (tl, nl) = got["serve"], got["llama_cpp"]
            if ns != nl:
                print(f"  note: rep {i}: serve {ns} tokens, llama-cpp-python {nl}", file=sys.stderr)
            rows.append({"prompt": prompt, "serve_s": ts, "serve_tokens": ns, "llama_cpp_s": tl, "llama_cpp_tokens": nl,
                         "serve_tok_s": ns / ts, "llama_cpp_tok_s": nl / tl, "ratio": (ns / ts) / (nl / tl)})
            print(f"  rep {i}: serve {ns / ts:.1f} tok/s, llama-cpp-python {nl / tl:.1f} tok/s ({ns} / {nl} tokens)",
                  flush=True)
    llm.close()
    return {"n_threads_llama_cpp": n_threads, "max_tokens": max_tokens, "runs": rows,
            "median_serve_tok_s": statistics.median(r["serve_tok_s"] for r in rows),
            "median_llama_cpp_tok_s": statistics.median(r["llama_cpp_tok_s"] for r in rows),
            "ratio": statistics.median(r["ratio"] for r in rows)}


def concurrent(url: str, model: str, clients: int, max_tokens: int) -> tuple[float, int]:
    counts = [0] * clients
    barrier = threading.Barrier(clients)

    def client(i: int) -> None:
        barrier.wait()
        counts[i] = ask(url, model, PROMPTS[i % len(PROMPTS)], max_tokens)

    started = time.perf_counter()
    workers = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return time.perf_counter() - started, sum(counts)


def sequential(url: str, model: str, n: int, max_tokens: int) -> tuple[float, int]:
    return timed(lambda: sum(ask(url, model, PROMPTS[i % len(PROMPTS)], max_tokens) for i in range(n)))


def measure_gain(serve_args: list[str], reps: int, clients: int, max_tokens: int, threads: int) -> dict:
    rows = []
    with server(serve_args, threads) as (url, model):
        ask(url, model, "Hello", 8)
        for i in range(reps):
            order = ["one", "many"] if i % 2 == 0 else ["many", "one"]
            got = {side: (sequential(url, model, clients, max_tokens) if side == "one"
                          else concurrent(url, model, clients, max_tokens)) for side in order}
            (t1, n1), (tn, nn) = got["one"], got["many"]
            rows.append({"one_client_s": t1, "one_client_tokens": n1, "clients_s": tn, "clients_tokens": nn,
                         "one_client_tok_s": n1 / t1, "clients_tok_s": nn / tn, "gain": (nn / tn) / (n1 / t1)})
            print(f"  rep {i}: 1 client {n1 / t1:.1f} tok/s, {clients} clients {nn / tn:.1f} tok/s "
                  f"({n1} / {nn} tokens)", flush=True)
    return {"clients": clients, "max_tokens": max_tokens, "runs": rows,
            "median_one_client_tok_s": statistics.median(r["one_client_tok_s"] for r in rows),
            "median_clients_tok_s": statistics.median(r["clients_tok_s"] for r in rows),
            "gain": statistics.median(r["gain"] for r in rows)}


def find_export(given: str | None) -> Path:
    for candidate in ([given] if given else ["runs/quickstart/export"]):
        path = Path(candidate).expanduser()
        if (path / "export.json").is_file():
            return path
    raise SystemExit("no export found: run `ducktune quickstart` then `ducktune export runs/quickstart`, "
                     "or pass --export EXPORT_DIR")


def render_section(result: dict) -> str:
    r, g, gl = result["ratio"], result["gain_transformers"], result.get("gain_llama_cpp")
    lines = [BEGIN, "## Serving speed (`bench/serve_speed.py`)", "",
             f"Date: {result['date']}. Export: `{result['export']}` ({result['model']}); "
             f"GGUF `{result['gguf']}`. {result['machine']}. Server processes with OMP_NUM_THREADS={result['threads']}; "
             f"llama.cpp threads {r['n_threads_llama_cpp']} on both sides. Runs alternate; medians. "
             f"Load average (1 min) before / after: {result['load_average_1min'][0]} / {result['load_average_1min'][1]} "
             "(other jobs shared the 2 cores).", "",
             "| measure | ducktune serve | baseline | ratio |", "|---|---|---|---|",
             f"| single stream, llama.cpp path (f16, greedy, ≤{r['max_tokens']} tokens) | "
             f"{r['median_serve_tok_s']:.1f} tok/s | llama-cpp-python `create_completion` {r['median_llama_cpp_tok_s']:.1f} tok/s | "
             f"**{r['ratio']:.2f}x** |",
             f"| transformers path, {g['clients']} concurrent clients vs 1 (≤{g['max_tokens']} tokens each) | "
             f"{g['median_clients_tok_s']:.1f} tok/s | 1 client {g['median_one_client_tok_s']:.1f} tok/s | **{g['gain']:.2f}x** |"]
    if gl:
        lines.append(f"| llama.cpp path, {gl['clients']} concurrent clients vs 1 | {gl['median_clients_tok_s']:.1f} tok/s | "
                     f"1 client {gl['median_one_client_tok_s']:.1f} tok/s | {gl['gain']:.2f}x |")
    lines += ["", f"serve_llamacpp_ratio: {r['ratio']:.3f}", f"serve_concurrency_gain: {g['gain']:.3f}", "",
              "The transformers path batches concurrent greedy requests (up to 8 gathered for 20 ms, decoded "
              "together with a KV cache, finished rows dropped; requests arriving meanwhile wait for the next "
              "batch); the llama.cpp path answers one request at a time per model. Both sides of each ratio ran "
              "alternately on the same loaded machine: the ratios are the result, absolute tok/s are not.", END]
    return "\n".join(lines)


def write_results(result: dict) -> None:
    from ducktune.io import write_json, write_text

    write_json(RESULTS_JSON, result)
    text = RESULTS_MD.read_text(encoding="utf-8")
    section = render_section(result)
    from blocks import replace_block

    text = replace_block(text, BEGIN, END, section, missing=section)
    write_text(RESULTS_MD, text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", help="an export folder with an f16 GGUF (default runs/quickstart/export)")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1,
                        help="OMP_NUM_THREADS of the servers (default 1: on 2 shared cores, 2 threads were 10x slower)")
    parser.add_argument("--skip-llama-cpp-gain", action="store_true")
    parser.add_argument("--write", action="store_true", help="save the JSON and the RESULTS.md section")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    export = find_export(args.export)
    manifest = json.loads((export / "export.json").read_text(encoding="utf-8"))
    gguf = export / manifest["files"]["gguf"]["f16"]
    print(f"serve_llamacpp_ratio on {gguf}", flush=True)
    ratio = measure_ratio(export, gguf, manifest, args.reps, args.max_tokens, args.threads)
    print("serve_concurrency_gain (transformers path)", flush=True)
    gain = measure_gain([str(export), "--engine", "transformers"], args.reps, args.clients, 64, args.threads)
    gain_llama = None
    if not args.skip_llama_cpp_gain:
        print("concurrency on the llama.cpp path (for comparison)", flush=True)
        gain_llama = measure_gain(["--gguf", str(gguf)], max(1, args.reps // 2), args.clients, 64, args.threads)
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "export": str(export),
              "model": manifest.get("base_model"), "gguf": gguf.name, "threads": args.threads,
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}",
              "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
              "ratio": ratio, "gain_transformers": gain, "gain_llama_cpp": gain_llama}
    print(f"serve_llamacpp_ratio: {ratio['ratio']:.3f}")
    print(f"serve_concurrency_gain: {gain['gain']:.3f}")
    if gain_llama:
        print(f"serve_concurrency_gain_llamacpp: {gain_llama['gain']:.3f}")
    if args.write:
        write_results(result)
        print(f"wrote {RESULTS_JSON.relative_to(ROOT)} and the section of {RESULTS_MD.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
