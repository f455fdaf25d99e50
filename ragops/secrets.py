"""Secret references (`${env:NAME}`, `${file:PATH}`) and redaction.

A resolved secret value is registered with the process-wide redactor, so every log line,
audit record, JSON document and error message can be scrubbed with `redact()`.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from ragops.errors import ConfigError

REF = re.compile(r"^\$\{(env|file):([^}]+)\}$")
MASK = "***"
MAX_SECRET_FILE_BYTES = 64 * 1024   # a key, a password, a certificate chain

_known_secrets: set[str] = set()


def is_reference(value: object) -> bool:
    return isinstance(value, str) and bool(REF.match(value.strip()))


def register_secret(value: str | None) -> None:
    """Remember a secret value so redact() hides it wherever it appears."""
    if value and len(value) >= 4:  # shorter strings would scrub ordinary words
        _known_secrets.add(value)


def resolve(ref: str, *, key: str, base_dir: Path | None = None) -> str:
    """Resolve one `${env:NAME}` / `${file:PATH}` reference; `key` names it in errors."""
    match = REF.match(ref.strip())
    if not match:
        raise ConfigError(f"{key}: expected a secret reference like ${{env:NAME}} or ${{file:PATH}}")
    kind, target = match.groups()
    if kind == "env":
        value = os.environ.get(target)
        if not value:   # CI expands a secret that is not defined to "": as missing as an unset variable
            raise ConfigError(f"{key}: environment variable {target} is {'not set' if value is None else 'empty'}")
    else:
        path = Path(target).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        try:
            with open(path, "rb") as handle:   # bounded: ${file:/dev/zero} must not read forever
                data = handle.read(MAX_SECRET_FILE_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"{key}: cannot read secret file {path}: {exc.strerror}") from None
        if len(data) > MAX_SECRET_FILE_BYTES:
            raise ConfigError(f"{key}: secret file {path} is larger than {MAX_SECRET_FILE_BYTES // 1024} KiB")
        try:
            value = data.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise ConfigError(f"{key}: secret file {path} is not UTF-8 text") from None
    register_secret(value)
    return value


def redact(text: str) -> str:
    """Replace every known secret value in text by ***."""
    if not isinstance(text, str):
        return text
    for secret in sorted(_known_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    # passwords inside connection strings, even ones we never resolved ourselves
    text = re.sub(r"(postgres(?:ql)?://[^:/@\s]+:)[^@\s]+@", r"\1" + MASK + "@", text)
    text = re.sub(r"(password=)(?:'(?:[^'\\]|\\.)*'?|\S+)", r"\1" + MASK, text)   # quoted: all of it
    return text


def redact_data(data):
    """Redact strings inside nested dicts/lists (for JSON output and audit records)."""
    if isinstance(data, str):
        return redact(data)
    if isinstance(data, dict):
        return {k: (MASK if _looks_secret_key(k) and data[k] else redact_data(v)) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [redact_data(v) for v in data]
    return data


def _looks_secret_key(key: object) -> bool:
    return isinstance(key, str) and bool(
        re.search(r"(password|passwd|secret|token|api_key|apikey|private_key|encryption_key)$", key.lower())
    )
