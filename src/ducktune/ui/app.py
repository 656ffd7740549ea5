"""`ducktune ui`: one FastAPI app serving a static page, its JSON endpoints and the OpenAI API.

The page (static/index.html + app.js + style.css) has no build step and loads nothing
from the internet. Its Chat tab talks to the same OpenAI-compatible `/v1` API that
`ducktune serve` offers, over every finished run in the runs folder. Training and export
run as `ducktune train/export` subprocesses (see jobs.py).
"""

from __future__ import annotations

import functools
import re
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Body, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles

from ducktune.errors import ConfigError, UserError
from ducktune.io import atomic_file, write_text
from ducktune.rundir import RunDir
from ducktune.serve.app import build_router, install_error_handlers
from ducktune.serve.limits import MAX_BODY_BYTES, BodyLimit
from ducktune.serve.protocol import APIError
from ducktune.serve.registry import RunsRegistry
from ducktune.ui import data_view, runs
from ducktune.ui.data_view import refuse_unusable_data
from ducktune.ui.jobs import JobSlot
from ducktune.ui.requests import CheckRequest, PreviewRequest

STATIC = Path(__file__).parent / "static"
_SAFE_NAME = re.compile(r"[^\w.\-]+")
MAX_UPLOAD_BYTES = 4 * 1024 ** 3
MAX_NAME_BYTES = 200  # under every file system's 255-byte limit, with room for atomic_file's temporary name
UPLOAD_PATH = "/api/data/upload"
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "[::1]", "::1"}


def safe_name(name: str) -> str:
    """A plain file name from any client-given one: no folders (../, /abs, C:\\), no odd characters, not too long."""
    cleaned = _SAFE_NAME.sub("_", name.replace("\\", "/").rsplit("/", 1)[-1]).strip("._")
    suffix = Path(cleaned).suffix[:16]
    stem = cleaned[: len(cleaned) - len(suffix)]
    stem = stem.encode()[: MAX_NAME_BYTES - len(suffix.encode())].decode("utf-8", "ignore")
    return (stem + suffix).strip("._") or "data"


class Workspace:
    """The runs folder and the UI's own files inside it (.ui/: uploads, saved configs, logs)."""

    def __init__(self, runs_dir: str | Path):
        self.runs_dir = Path(runs_dir).resolve()
        self.ui_dir = self.runs_dir / ".ui"
        self.uploads = self.ui_dir / "uploads"
        self.configs = self.ui_dir / "configs"
        self.logs = self.ui_dir / "logs"

    def datasets(self) -> list[dict]:
        from ducktune.data.readers import SUPPORTED_SUFFIXES

        if not self.uploads.is_dir():
            return []
        files = [p for p in self.uploads.iterdir() if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES]
        return [{"name": p.name, "path": str(p), "bytes": p.stat().st_size}
                for p in sorted(files, key=lambda p: p.stat().st_mtime, reverse=True)]


def foreign_request(request: Request, loopback_only: bool) -> str | None:
    """Why a request must be refused, or None: a Host that is not this machine, or a foreign Origin."""
    host = request.headers.get("host", "")
    hostname = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    if loopback_only and hostname not in LOOPBACK_NAMES:
        return f"Host '{host}' is not this machine; open the UI at http://127.0.0.1 or http://localhost"
    origin = request.headers.get("origin")
    if origin and request.method not in ("GET", "HEAD", "OPTIONS") and origin.split("://", 1)[-1] != host:
        return f"cross-origin request from {origin} refused"
    return None


def create_ui_app(runs_dir: str | Path = "runs", device: str = "auto", loopback_only: bool = True,
                  max_upload_bytes: int = MAX_UPLOAD_BYTES) -> FastAPI:
    """The UI app: the page, one router per tab (overview, data, train, runs, export) and the OpenAI API.
    Request bodies: at most `max_upload_bytes` for a dataset upload, MAX_BODY_BYTES for the rest (else 413)."""
    space = Workspace(runs_dir)
    registry = RunsRegistry(space.runs_dir, device=device)
    train_slot, export_slot = JobSlot("train"), JobSlot("export")

    app = FastAPI(title="ducktune", docs_url=None, redoc_url=None, openapi_url=None)
    install_error_handlers(app)

    @app.middleware("http")
    async def same_origin_only(request: Request, call_next):
        # The UI can start training (and, with trust_remote_code, run a model's code): another web
        # site open in the same browser must not be able to drive it (CSRF, DNS rebinding).
        problem = foreign_request(request, loopback_only)
        if problem:
            return JSONResponse(APIError(403, problem).body(), status_code=403)
        return await call_next(request)

    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES, per_path={UPLOAD_PATH: (
        max_upload_bytes, "put the file on this machine and give its path in the Train form instead")})

    app.include_router(build_router(registry))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/")
    def index():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    for router in (overview_router(space), data_router(space), train_router(space, train_slot), runs_router(space),
                   export_router(space, export_slot), log_router({"train": train_slot, "export": export_slot})):
        app.include_router(router)
    return app


def overview_router(space: Workspace) -> APIRouter:
    from ducktune import __version__
    from ducktune.config import BUILTIN_MODEL
    from ducktune.data.readers import SUPPORTED_SUFFIXES
    from ducktune.ui.form import form_schema

    router = APIRouter()

    @router.get("/api/info")
    def info() -> dict:
        recent = list(dict.fromkeys(r["base_model"] for r in runs.list_runs(space.runs_dir) if r.get("base_model")))
        return {"version": __version__, "runs_dir": str(space.runs_dir), "builtin_models": [BUILTIN_MODEL],
                "recent_models": [m for m in recent if m != BUILTIN_MODEL][:10],
                "suffixes": list(SUPPORTED_SUFFIXES),
                "default_run_dir": str(space.runs_dir / time.strftime("run-%Y%m%d-%H%M%S"))}

    @router.get("/api/schema")
    def schema() -> list[dict]:
        return form_schema()

    return router


def data_router(space: Workspace) -> APIRouter:
    from ducktune.data.readers import SUPPORTED_SUFFIXES

    router = APIRouter()

    @router.get("/api/data/files")
    def data_files() -> list[dict]:
        return space.datasets()

    @router.put(UPLOAD_PATH)
    async def upload(request: Request, name: str) -> dict:
        filename = safe_name(name)
        if Path(filename).suffix.lower() not in SUPPORTED_SUFFIXES:
            raise UserError(f"{name}: unsupported file type (use {', '.join(SUPPORTED_SUFFIXES)})")
        target = upload_target(space, filename)
        with atomic_file(target, "wb") as handle:  # streamed to disk: datasets can be large (size: BodyLimit)
            async for chunk in request.stream():
                handle.write(chunk)
        return {"path": str(target), "name": filename}

    @router.post("/api/data/check")
    def check(payload: CheckRequest) -> dict:
        return data_view.check_dataset(**payload.arguments())

    @router.post("/api/data/preview")
    def preview(payload: PreviewRequest) -> dict:
        return data_view.preview_samples(**payload.arguments())

    return router


def upload_target(space: Workspace, filename: str) -> Path:
    """Where an upload named `filename` (already a plain name) is written: inside the upload folder,
    never through a symbolic link (atomic_file's rename would replace the link, but say so instead)."""
    space.uploads.mkdir(parents=True, exist_ok=True)
    folder = space.uploads.resolve()
    if not folder.is_relative_to(space.runs_dir):
        raise UserError(f"{space.uploads} leads outside {space.runs_dir} (a symbolic link); not writing uploads there")
    target = folder / filename
    if target.is_symlink():
        raise UserError(f"{filename}: {target} is a symbolic link; not writing through it (remove it first)")
    return target


def train_router(space: Workspace, train_slot: JobSlot) -> APIRouter:
    from ducktune.config import dump_config
    from ducktune.models.sources import check_model_name
    from ducktune.ui.form import config_from_form

    router = APIRouter()

    @router.post("/api/config/validate")
    def validate(values: dict[str, Any] = Body(...)) -> dict:
        config = config_from_form(values)
        return {"yaml": dump_config(config), "output_dir": config.output.dir}

    @router.post("/api/train/start")
    def train_start(values: dict[str, Any] = Body(...)) -> dict:
        train_slot.ensure_free()  # before writing anything: the running job's YAML must stay as it ran
        config = config_from_form(values)
        if not config.data.datasets:  # `ducktune train` would fail a second later, in a job log
            raise ConfigError("form: data.datasets: no training data given (add a file)")
        refuse_unusable_data(config)  # the same first problem `ducktune data check` names, as a 400
        check_model_name(config.model.name_or_path)
        config.output.dir = str(run_dir_in(space.runs_dir, config.output.dir))
        refuse_unresumable(RunDir(config.output.dir), config)
        name = safe_name(Path(config.output.dir).name)
        yaml_path = space.configs / f"{name}.yaml"
        write_text(yaml_path, dump_config(config))
        job = train_slot.start(["train", str(yaml_path)], space.logs / f"train-{name}.log", config.output.dir)
        return {"yaml_path": str(yaml_path), "yaml_name": yaml_path.name, "run_dir": config.output.dir,
                "run_name": Path(config.output.dir).name, "pid": job.process.pid}

    @router.post("/api/train/stop")
    def train_stop() -> dict:
        if train_slot.job:
            train_slot.job.stop()
        return train_slot.status()

    @router.get("/api/train/status")
    def train_status() -> dict:
        status = train_slot.status()
        if train_slot.job:
            status["metrics"] = _metrics(Path(train_slot.job.target))
            status["run_name"] = Path(train_slot.job.target).name
            yaml_path = Path(train_slot.job.args[-1])
            if yaml_path.is_file():  # a reloaded page shows the form the job runs, and its YAML link
                status["yaml_name"] = yaml_path.name
                status["form"] = _job_form(str(yaml_path), yaml_path.stat().st_mtime_ns)
        return status

    @router.get("/api/configs/{name}")
    def config_download(name: str):
        path = runs.safe_file(space.configs, safe_name(name))
        return FileResponse(path, media_type="application/x-yaml", filename=path.name)

    return router


@functools.lru_cache(maxsize=4)
def _job_form(yaml_path: str, mtime_ns: int) -> dict:
    """The form values of a job's YAML, read once per version of the file (the status is polled each second)."""
    from ducktune.config import load_config
    from ducktune.ui.form import form_values

    return form_values(load_config(yaml_path))


def run_dir_in(runs_dir: Path, value: str) -> Path:
    """output.dir of a run started from the UI: directly in its runs folder, where the Runs, Chat and
    Export tabs look (a bare name goes there); anywhere else is refused."""
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = runs_dir / path if len(path.parts) == 1 else Path.cwd() / path
    path = path.resolve()
    if path.parent != runs_dir.resolve() or path.name.startswith("."):
        raise UserError(f"form: output.dir: {value}: the UI keeps its runs in {runs_dir}; give a folder name there")
    return path


def refuse_unresumable(run: RunDir, config) -> None:
    """A run folder the job would refuse, refused now (before the form's YAML replaces the one the
    earlier run started with): a finished run without output.overwrite, or an unfinished one the
    form changes."""
    from ducktune.train.recipe import continuation_problem

    if not run.exists() or config.output.overwrite:
        return
    finished, changes = continuation_problem(run, config)
    if finished:
        raise UserError(f"form: output.dir: {config.output.dir} already holds a finished run; choose another "
                        "folder (or set output.overwrite)")
    if changes:
        raise UserError(f"form: output.dir: {config.output.dir} holds an unfinished run started with other settings "
                        f"({'; '.join(changes[:3])}); start it with those to resume it, set output.overwrite to "
                        "start afresh, or choose another folder")


def runs_router(space: Workspace) -> APIRouter:
    router = APIRouter()

    @router.get("/api/runs")
    def run_list() -> list[dict]:
        return runs.list_runs(space.runs_dir)

    @router.get("/api/runs/{name}")
    def run_detail(name: str) -> dict:
        path = runs.run_path(space.runs_dir, name)
        summary = runs.run_summary(path)
        summary["metrics"] = _metrics(path)
        summary["report_html"] = runs.report_html(path, name)
        summary["evaluation"] = runs.run_evaluation(path)
        return summary

    @router.get("/api/runs/{name}/metrics")
    def run_metrics(name: str) -> list[dict]:
        return _metrics(runs.run_path(space.runs_dir, name))

    @router.get("/api/runs/{name}/files/{relative:path}")
    def run_file(name: str, relative: str):
        path = runs.safe_file(runs.run_path(space.runs_dir, name), relative)
        if path.suffix == ".png":
            return FileResponse(path, media_type="image/png")
        return FileResponse(path, filename=path.name)

    return router


def export_router(space: Workspace, export_slot: JobSlot) -> APIRouter:
    router = APIRouter()

    @router.post("/api/export/start")
    def export_start(name: str = Body(..., embed=True)) -> dict:
        path = runs.run_path(space.runs_dir, name)
        export_slot.start(["export", str(path)], space.logs / f"export-{safe_name(name)}.log", str(path))
        return export_slot.status()

    @router.get("/api/export/status")
    def export_status() -> dict:
        status = export_slot.status()
        if export_slot.job:
            path = Path(export_slot.job.target)
            status["files"] = _export_listing(path)
            status["report"] = runs.export_report(path)
        return status

    @router.get("/api/export/{name}")
    def export_listing(name: str) -> dict:
        path = runs.run_path(space.runs_dir, name)
        return {"files": _export_listing(path), "report": runs.export_report(path)}

    return router


def _export_listing(path: Path) -> list[dict]:
    from urllib.parse import quote

    # Quoted: a run named "a #1?x" would otherwise end its link at the '#'.
    return [{"name": f.name, "relative": str(f.relative_to(path)), "bytes": f.stat().st_size,
             "url": f"api/runs/{quote(path.name, safe='')}/files/{quote(f.relative_to(path).as_posix())}"}
            for f in runs.export_files(path)]


def log_router(slots: dict[str, JobSlot]) -> APIRouter:
    router = APIRouter()

    @router.get("/api/log/{kind}", response_class=PlainTextResponse)
    def full_log(kind: str) -> str:
        slot = slots.get(kind)
        if slot is None or slot.job is None:
            raise UserError(f"no {kind} log")
        return slot.job.log_tail(limit=10 * 1024 * 1024)

    return router


# What preference runs log beside the loss (TRL's names; eval_ ones on validation pairs).
PREFERENCE_METRICS = ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen",
                      "logps/rejected", "kl")


def _metrics(path: Path) -> list[dict]:
    keep = ("step", "loss", "eval_loss", "lr", "tokens_per_s", "epoch")
    return [{k: v for k, v in row.items() if k in keep or k.removeprefix("eval_") in PREFERENCE_METRICS}
            for row in RunDir(path).read_metrics()]
