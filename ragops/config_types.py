"""Validated value types shared by every ragops.yaml section model.

Section models that live beside their engine (e.g. a new subsystem's settings) import these instead
of ragops.config, so that config.py only lists the sections and loading stays in one place.
"""
from __future__ import annotations

import re
from typing import Annotated, get_args

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic.fields import FieldInfo

from ragops import bounds, secrets
from ragops.durations import parse_duration


def _duration(value: object) -> float:
    return parse_duration(value)


def _secret_ref(value: object) -> str:
    if not isinstance(value, str) or not secrets.is_reference(value):
        raise ValueError("must be a secret reference like ${env:NAME} or ${file:PATH}, not a literal value")
    return value


def _host_port(value: object) -> str:
    text = str(value)
    match = re.fullmatch(r"([\w.\-]+|\[[0-9a-fA-F:]+\]):(\d{1,5})", text)
    if not match or not 0 < int(match.group(2)) < 65536:
        raise ValueError(f"expected host:port like 127.0.0.1:8080, got {text!r}")
    return text


def _weight(value: int) -> int:
    if value > 100:
        raise ValueError(f"weight {value} is above 100")
    if value < 1:
        raise ValueError(f"weight {value} is below 1")
    return value


Duration = Annotated[float, BeforeValidator(_duration)]
SecretRef = Annotated[str, AfterValidator(_secret_ref)]
HostPort = Annotated[str, AfterValidator(_host_port)]
Port = Annotated[int, Field(gt=0, lt=65536)]
Weight = Annotated[int, AfterValidator(_weight)]


def duration_fields(model: type[BaseModel]) -> set[str]:
    """The names of a model's Duration fields."""
    return {name for name, info in model.model_fields.items() if is_duration_field(info)}


def is_duration_field(info: FieldInfo) -> bool:
    """Whether a model field is a Duration (or Duration | None)."""
    def found(annotation: object) -> bool:
        if any(isinstance(m, BeforeValidator) and m.func is _duration for m in getattr(annotation, "__metadata__", ())):
            return True
        return any(found(arg) for arg in get_args(annotation))

    return any(isinstance(m, BeforeValidator) and m.func is _duration for m in info.metadata) or found(info.annotation)


class Strict(BaseModel):
    # defer_build: a model's validator is built on its first validation, not at import; a Config
    # read back from ragops.config_cache never validates, so it never pays for building them
    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)

    @model_validator(mode="after")
    def _within_bounds(self) -> Strict:
        bounds.check(self, duration_fields(type(self)))   # ragops.bounds: the documented maximum of every duration and number
        return self
