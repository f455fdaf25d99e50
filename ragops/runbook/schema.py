"""Runbook files: the schema, loading, and validation whose errors name FILE:LINE.

A runbook (`runbooks/<name>.yaml`):

    name: pre-deploy
    description: The guide's pre-deployment checklist as a gate.
    inputs:
      expected_rps: {type: number, default: 20, description: expected peak requests/s}
    steps:
      - id: load
        name: Load test at 2x expected traffic
        action: loadtest
        with: {rps: "{{ inputs.expected_rps * 2 }}", duration: 20s, max_p95_ms: 2000}
        when: "inputs.expected_rps > 0"
        timeout: 5m
        retry: {attempts: 3, delay: 2s, backoff: 2}
        on_failure: abort            # abort | continue | goto:<step id>
        gate: true                   # a failure is a failed gate (exit 3), not a broken step (exit 1)
        always: false                # cleanup: runs even after an abort
        outputs: {p95: "{{ result.p95_ms }}"}
    outputs: {p95: "{{ steps.load.outputs.p95 }}"}
    drill: {rto: {from: restore, to: verify}, rpo: "{{ steps.latest.outputs.age_seconds }}"}
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ragops.config_types import Duration
from ragops.durations import parse_duration
from ragops.errors import ConfigError
from ragops.resources import shipped_dir
from ragops.runbook import expr
from ragops.yamlfile import Problem, YamlSyntaxError, duplicate_keys, format_loc, line_of, validation_problems
from ragops.yamlfile import load as load_yaml
from ragops.yamlfile import read_text as read_yaml_text

STEP_ID = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,62}$")
INPUT_TYPES = ("string", "number", "integer", "boolean", "duration", "list")
ROOTS = {"inputs", "steps", "config", "env", "run", "result"}
STEP_FIELDS = ("outputs", "status", "error", "duration", "attempts")


class RunbookInvalid(ConfigError):
    """A runbook file failed validation; `issues` holds every FILE:LINE: message."""

    def __init__(self, issues: list[Issue]):
        self.issues = issues
        first = issues[0].format() if issues else "invalid runbook"
        more = f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""
        super().__init__(first + more)


@dataclass
class Issue:
    file: str
    line: int | None
    message: str                 # `path: what is wrong`

    def format(self) -> str:
        return f"{self.file}:{self.line}: {self.message}" if self.line else f"{self.file}: {self.message}"

    @classmethod
    def of(cls, label: str, problem: Problem) -> Issue:
        return cls(label, problem.line, problem.text())


# ---- the schema --------------------------------------------------------------------------

def _identifier(value: str) -> str:
    if not STEP_ID.match(value):
        raise ValueError(f"expected lowercase letters, digits, '-' and '_' (at most 63), got {value!r}")
    return value


def _empty_if_none(value: Any) -> Any:
    return {} if value is None else value


def _text(value: Any) -> Any:
    """Names and descriptions are shown to people: any scalar will do, nothing is ''."""
    return "" if value is None else str(value) if isinstance(value, (int, float, bool)) else value


Identifier = Annotated[str, AfterValidator(_identifier)]
Mapping = Annotated[dict[str, Any], BeforeValidator(_empty_if_none)]
Text = Annotated[str, BeforeValidator(_text)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputSpec(_Model):
    """An input: `{type, default, description, choices, required}`, or just a default value."""
    type: Literal["string", "number", "integer", "boolean", "duration", "list"] = "string"
    choices: list | None = None
    default: Any = None
    required: StrictBool = False
    description: Text = ""
    _name: str = PrivateAttr("")

    @property
    def name(self) -> str:
        return self._name

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, body: Any) -> Any:
        if body is None:
            body = {}
        if not isinstance(body, dict):
            body = {"default": body, "type": _guess_type(body)}
        body = dict(body)
        body.setdefault("type", _guess_type(body.get("default")))
        body.setdefault("required", "default" not in body)
        return body

    @field_validator("default")
    @classmethod
    def _default_has_the_type(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None or "type" not in info.data:
            return value
        try:
            return coerce(info.data["type"], value, info.data.get("choices"), (info.context or {}).get("name", ""))
        except ConfigError as exc:
            raise ValueError(exc.message.split(": ", 1)[1]) from None

    @model_validator(mode="after")
    def _named(self, info: ValidationInfo) -> InputSpec:
        self._name = (info.context or {}).get("name", "")
        return self


class Retry(_Model):
    attempts: int = Field(1, ge=1)
    delay: Duration = 0.0
    backoff: float = Field(1.0, ge=1)
    max_delay: Duration | None = None

    def delays(self) -> list[float]:
        """The wait before attempt 2, 3, ...: delay, delay*backoff, delay*backoff^2 ..."""
        out, wait = [], self.delay
        for _ in range(max(self.attempts - 1, 0)):
            out.append(min(wait, self.max_delay) if self.max_delay is not None else wait)
            wait *= self.backoff
        return out


def _retry(value: Any) -> Any:
    if value is None:
        return {}
    return {"attempts": value} if isinstance(value, int) and not isinstance(value, bool) else value


def _when(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return _strip_braces(str(value))


def _on_failure(value: Any) -> str:
    if isinstance(value, dict) and set(value) == {"goto"}:
        value = f"goto:{value['goto']}"
    if value in ("abort", "continue"):
        return value
    if isinstance(value, str) and value.startswith("goto:"):
        return "goto:" + value.split(":", 1)[1].strip()
    raise ValueError(f"expected abort, continue or goto:<step>, got {value!r}")


class Step(_Model):
    id: Identifier
    name: Text = ""
    action: Annotated[str, Field(min_length=1)]
    params: Mapping = Field(default_factory=dict, alias="with")
    when: Annotated[str | None, BeforeValidator(_when)] = None
    timeout: Duration | None = None
    retry: Annotated[Retry, BeforeValidator(_retry)] = Field(default_factory=Retry)
    on_failure: Annotated[str, BeforeValidator(_on_failure)] = "abort"   # abort | continue | goto:<step>
    outputs: Mapping = Field(default_factory=dict)
    gate: StrictBool | None = None          # None: the operation decides (asserts and checks are gates)
    always: StrictBool = False              # cleanup: runs even after an abort
    description: Text = ""

    @model_validator(mode="after")
    def _named(self) -> Step:
        self.name = self.name or self.id
        return self

    @property
    def goto(self) -> str | None:
        return self.on_failure.split(":", 1)[1] if self.on_failure.startswith("goto:") else None


class RunbookFile(_Model):
    """The top level; inputs and steps are validated one by one so that every problem is reported."""
    name: Identifier
    description: Text = ""
    inputs: Mapping = {}
    steps: Annotated[list[Any], Field(min_length=1)]
    outputs: Mapping = {}
    drill: Mapping = {}                 # {rto: {from, to}, rpo: template}
    tags: list[str] | None = None


@dataclass
class Runbook:
    name: str
    description: str
    inputs: dict[str, InputSpec]
    steps: list[Step]
    outputs: dict
    drill: dict
    path: Path
    text: str
    root: yaml.Node | None = None

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def step(self, step_id: str) -> Step:
        return self.steps[self.index(step_id)]

    def index(self, step_id: str) -> int:
        for index, step in enumerate(self.steps):
            if step.id == step_id:
                return index
        raise KeyError(step_id)

    def line(self, *path) -> int | None:
        return line_of(self.root, path)

    def issue(self, where: tuple, message: str, *, line_at: tuple | None = None) -> Issue:
        """An Issue at a key path of this file: `FILE:LINE: path: message` (the line of `line_at`
        when the path names a key the file does not have)."""
        return Issue(str(self.path), self.line(*(line_at or where)), f"{format_loc(where)}: {message}")


# ---- coercion ----------------------------------------------------------------------------

def coerce_input(spec: InputSpec, value: Any) -> Any:
    """Coerce a value (often a string from --input k=v) to the input's type."""
    return coerce(spec.type, value, spec.choices, spec.name)


def coerce(kind: str, value: Any, choices: list | None = None, name: str = "") -> Any:
    try:
        if value is None:
            return None
        result = _COERCE[kind](value)
    except (TypeError, ValueError, KeyError):
        raise ConfigError(f"input {name}: expected {kind}, got {value!r}") from None
    if choices and result not in choices:
        raise ConfigError(f"input {name}: {result!r} is not one of {', '.join(map(str, choices))}")
    return result


def _integer(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError
    return int(value)


def _number(value: Any) -> int | float:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, int):
        return value
    result = float(value)
    return int(result) if result.is_integer() and isinstance(value, str) and "." not in value else result


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "yes", "1", "on"):
        return True
    if str(value).lower() in ("false", "no", "0", "off"):
        return False
    raise ValueError


_COERCE: dict[str, Callable[[Any], Any]] = {
    "string": str, "integer": _integer, "number": _number, "boolean": _boolean, "duration": parse_duration,
    "list": lambda v: v if isinstance(v, list) else [s.strip() for s in str(v).split(",") if s.strip()]}


# ---- loading -----------------------------------------------------------------------------

def load_runbook(path: Path | str, *, check=None) -> Runbook:
    """Load and validate a runbook; raise RunbookInvalid listing every FILE:LINE problem.

    `check(runbook) -> list[Issue]` adds the operation-level checks (known operations, their
    parameters); the engine passes ragops.runbook.validate.check_runbook.
    """
    runbook, issues = parse_runbook(path)
    if runbook is not None and check is not None:
        issues.extend(check(runbook))
    if issues or runbook is None:
        raise RunbookInvalid(issues)
    return runbook


def parse_runbook(path: Path | str) -> tuple[Runbook | None, list[Issue]]:
    """The runbook and every problem in it (schema, duplicate keys, expressions, references)."""
    path = Path(path)
    label = str(path)
    try:
        text = read_yaml_text(path)
        data, root = load_yaml(text)
    except OSError as exc:
        return None, [Issue(label, None, f"cannot read: {exc.strerror}")]
    except ValueError as exc:
        return None, [Issue(label, None, str(exc))]
    except YamlSyntaxError as exc:
        return None, [Issue.of(label, exc.problem)]
    if not isinstance(data, dict):
        return None, [Issue(label, 1, "expected a mapping with name, description, inputs and steps")]
    issues = [Issue.of(label, p) for p in duplicate_keys(root)]
    fallback_name = path.stem if STEP_ID.match(path.stem) else "runbook"
    top = _validated(RunbookFile, data, (), root, label, issues, fill={"name": fallback_name, "steps": [{}]})
    runbook = Runbook(name=top.name if top else fallback_name, description=top.description if top else "",
                      inputs={}, steps=[], outputs=top.outputs if top else {}, drill=top.drill if top else {},
                      path=path, text=text, root=root)
    raw_inputs = data.get("inputs")
    for input_name, body in (raw_inputs.items() if isinstance(raw_inputs, dict) else ()):
        spec = _validated(InputSpec, body, ("inputs", input_name), root, label, issues, fill={},
                          context={"name": str(input_name)})
        runbook.inputs[str(input_name)] = spec or InputSpec.model_validate({}, context={"name": str(input_name)})
    raw_steps = data.get("steps")
    for index, body in enumerate(raw_steps if isinstance(raw_steps, list) else ()):
        step = _parse_step(runbook, index, body, issues)
        if step is not None:
            runbook.steps.append(step)
    issues.extend(_check_ids(runbook))
    issues.extend(check_references(runbook))
    return runbook, issues


_NO_ACTION = "-"        # stands in for a missing or invalid action while the rest of a step is checked


def _parse_step(runbook: Runbook, index: int, body: Any, issues: list[Issue]) -> Step | None:
    where = ("steps", index)
    if not isinstance(body, dict):
        issues.append(runbook.issue(where, "expected a mapping with id, name and action"))
        return None
    step = _validated(Step, body, where, runbook.root, str(runbook.path), issues,
                      fill={"id": f"step-{index + 1}", "action": _NO_ACTION})
    if step is not None and step.action == _NO_ACTION:
        step.action = ""            # reported already; operation checks skip it
    return step


def _validated(model: type[BaseModel], body: Any, where: tuple, root, label: str, issues: list[Issue], *,
               fill: dict, context: dict | None = None):
    """The model, recording every problem; when invalid, the model of what was valid (the bad keys
    left out, required ones filled in) so that later checks still see the rest, or None."""
    try:
        return model.model_validate(body, context=context)
    except ValidationError as exc:
        issues.extend(Issue.of(label, p) for p in validation_problems(root, exc, where))
        if not isinstance(body, dict):
            return None
        bad = {err["loc"][0] for err in exc.errors() if err["loc"]}
        try:
            return model.model_validate({**fill, **{k: v for k, v in body.items() if k not in bad}}, context=context)
        except ValidationError:
            return None


def _check_ids(runbook: Runbook) -> list[Issue]:
    issues: list[Issue] = []
    first: dict[str, int] = {}
    for index, step in enumerate(runbook.steps):
        if step.id in first:
            issues.append(runbook.issue(("steps", index, "id"), f"{step.id!r} is used twice (first on line "
                                        f"{runbook.line('steps', first[step.id], 'id')})"))
        else:
            first[step.id] = index
    return issues


def _guess_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, list):
        return "list"
    return "string"


def _strip_braces(text: str) -> str:
    text = text.strip()
    match = re.fullmatch(r"\{\{(.*)\}\}", text, re.DOTALL)
    return match.group(1).strip() if match else text


# ---- references --------------------------------------------------------------------------

def check_expression(runbook: Runbook, text: str, where: tuple, position: int | None,
                     allow_result: bool = False) -> list[Issue]:
    """An expression parses, and its references name declared inputs and existing steps that run
    before `position` (None: after all of them, as in the runbook's outputs)."""
    try:
        tree = expr.parse(text)
    except expr.ExpressionError as exc:
        return [runbook.issue(where, exc.message)]
    ids = [s.id for s in runbook.steps]
    issues = []
    for ref in expr.references(tree):
        root, shown = ref[0], ".".join(map(str, ref))
        if root not in ROOTS or (root == "result" and not allow_result):
            issues.append(runbook.issue(where, f"unknown reference {shown!r} (roots: inputs, steps, config, env, run)"))
        elif root == "inputs" and len(ref) > 1 and ref[1] not in runbook.inputs:
            issues.append(runbook.issue(where, f"unknown input {ref[1]!r} "
                                        f"(declared: {', '.join(runbook.inputs) or 'none'})"))
        elif root == "steps" and len(ref) > 1:
            if ref[1] not in ids:
                issues.append(runbook.issue(where, f"unknown step {ref[1]!r} in reference {shown!r}"))
            elif position is not None and ids.index(ref[1]) >= position:
                issues.append(runbook.issue(where, f"step {ref[1]!r} runs after this one; "
                                            f"its outputs are not available yet"))
            elif len(ref) > 2 and ref[2] not in STEP_FIELDS:
                issues.append(runbook.issue(where, f"steps.{ref[1]}.{ref[2]}: expected outputs, status, error, "
                                            f"duration or attempts"))
    return issues


def _templates(runbook: Runbook, value: Any, where: tuple, position: int | None, allow_result: bool = False):
    return [issue for text in expr.template_expressions(value)
            for issue in check_expression(runbook, text, where, position, allow_result)]


def check_references(runbook: Runbook) -> list[Issue]:
    """Every expression field: `when`, templates in `with` and outputs, the drill's; gotos exist.
    (Parameters an operation keeps as bare expressions, like assert's `that`, are checked by
    ragops.runbook.validate, which knows the operations.)"""
    issues: list[Issue] = []
    ids = [s.id for s in runbook.steps]
    for index, step in enumerate(runbook.steps):
        base = ("steps", index)
        if step.when:
            issues += check_expression(runbook, step.when, base + ("when",), index)
        for key, value in step.params.items():
            issues += _templates(runbook, value, base + ("with", key), index)
        for key, value in step.outputs.items():
            issues += _templates(runbook, value, base + ("outputs", key), index + 1, allow_result=True)
        if step.goto is not None and step.goto not in ids:
            issues.append(runbook.issue(base + ("on_failure",),
                                        f"goto target {step.goto!r} is not a step of this runbook"))
    for key, value in runbook.outputs.items():
        issues += _templates(runbook, value, ("outputs", key), None)
    for key in ("rto", "rpo"):
        value = runbook.drill.get(key)
        if isinstance(value, str):
            for text in expr.template_expressions(value) or [value]:
                issues += check_expression(runbook, text, ("drill", key), None)
    rto = runbook.drill.get("rto")
    if isinstance(rto, dict):
        for key in ("from", "to"):
            if rto.get(key) not in ids:
                issues.append(runbook.issue(("drill", "rto", key), f"{rto.get(key)!r} is not a step of this runbook"))
    return issues


# ---- finding runbooks --------------------------------------------------------------------

def runbook_dirs(config=None) -> list[Path]:
    """Where runbooks are looked up: the configured dir, then the one shipped with ragops."""
    dirs: list[Path] = []
    if config is not None:
        dirs.append(config.resolve_path(config.env.runbooks.dir))
    shipped = shipped_dir("runbooks")
    if shipped not in dirs:
        dirs.append(shipped)
    return dirs


def find_runbook(name: str, dirs: list[Path]) -> Path:
    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml") and candidate.exists():
        return candidate
    for directory in dirs:
        for suffix in (".yaml", ".yml"):
            path = directory / f"{name}{suffix}"
            if path.exists():
                return path
    known = sorted({p.stem for d in dirs if d.is_dir() for p in list(d.glob("*.yaml")) + list(d.glob("*.yml"))})
    raise ConfigError(f"no runbook named {name!r} (known: {', '.join(known) or 'none'})",
                      hint="ragops runbook list")


def list_runbooks(dirs: list[Path]) -> list[Path]:
    seen: dict[str, Path] = {}
    for directory in dirs:
        if directory.is_dir():
            for path in sorted(list(directory.glob("*.yaml")) + list(directory.glob("*.yml"))):
                seen.setdefault(path.stem, path)
    return [seen[k] for k in sorted(seen)]
