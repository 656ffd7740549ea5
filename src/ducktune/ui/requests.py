"""The JSON bodies the UI's Data tab posts, declared once so a missing or mistyped field is a
400 naming the field (FastAPI validates them), never a TypeError deep in the data code.

Fields the page sends that a request does not use are ignored, as the page evolves faster
than these endpoints.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ducktune.config import DataConfig, DatasetSpec

TrainOn = Literal["assistant", "last_assistant", "all"]
# The config's own types, so a value the config would refuse is a 400 here, not a 500 later.
DatasetFormat = DatasetSpec.model_fields["format"].annotation
CUTOFF_MIN = next(m.gt for m in DataConfig.model_fields["cutoff_len"].metadata if getattr(m, "gt", None) is not None)
MAX_PREVIEW = 100


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")

    path: str = Field(min_length=1)
    model: str | None = None
    chat_template: str | None = None
    system_prompt: str | None = None
    cutoff_len: int = Field(1024, gt=CUTOFF_MIN, le=1_000_000)
    train_on: TrainOn = "assistant"


class CheckRequest(_Body):
    """POST /api/data/check: `ducktune data check PATH [--model M]`."""

    format: DatasetFormat = "auto"

    def arguments(self) -> dict:
        return {"path": self.path, "fmt": self.format, "model": self.model, "chat_template": self.chat_template,
                "system_prompt": self.system_prompt, "cutoff_len": self.cutoff_len, "train_on": self.train_on}


class PreviewRequest(_Body):
    """POST /api/data/preview: samples `start` .. `start + count` rendered with `model`'s template."""

    model: str = Field(min_length=1)
    fmt: DatasetFormat = "auto"
    start: int = Field(0, ge=0)
    count: int = Field(3, ge=1, le=MAX_PREVIEW)

    def arguments(self) -> dict:
        return self.model_dump()
