"""Validated value types shared by every ragops.yaml section model.

Section models that live beside their engine (e.g. a new subsystem's settings) import these instead
of ragops.config, so that config.py only lists the sections and loading stays in one place.
"""
from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from ragops import secrets
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


class Strict(BaseModel):
    # defer_build: a model's validator is built on its first validation, not at import; a Config
    # read back from ragops.config_cache never validates, so it never pays for building them
    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)
