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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ragops.durations import parse_duration
from ragops.errors import ConfigError
from ragops.runbook import expr

STEP_ID = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,62}$")
INPUT_TYPES = ("string", "number", "integer", "boolean", "duration", "list")
TOP_KEYS = {"name", "description", "inputs", "steps", "outputs", "drill", "tags"}
STEP_KEYS = {"id", "name", "action", "with", "when", "timeout", "retry", "on_failure", "outputs",
             "gate", "always", "description"}
INPUT_KEYS = {"type", "default", "description", "choices", "required"}
RETRY_KEYS = {"attempts", "delay", "backoff", "max_delay"}
ROOTS = {"inputs", "steps", "config", "env", "run", "result"}


class RunbookInvalid(ConfigError):
    """A runbook file failed validation; `issues` holds every FILE:LINE: message."""

    def __init__(self, issues: list["Issue"]):
        self.issues = issues
        first = issues[0].format() if issues else "invalid runbook"
        more = f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""
        super().__init__(first + more)


@dataclass
class Issue:
    file: str
    line: int | None
    message: str

    def format(self) -> str:
        return f"{self.file}:{self.line}: {self.message}" if self.line else f"{self.file}: {self.message}"


@dataclass
class InputSpec:
    name: str
    type: str = "string"
    default: Any = None
    required: bool = False
    description: str = ""
    choices: list | None = None


@dataclass
class Retry:
    attempts: int = 1
    delay: float = 0.0
    backoff: float = 1.0
    max_delay: float | None = None

    def delays(self) -> list[float]:
        """The wait before attempt 2, 3, ...: delay, delay*backoff, delay*backoff^2 ..."""
        out, wait = [], self.delay
        for _ in range(max(self.attempts - 1, 0)):
            out.append(min(wait, self.max_delay) if self.max_delay is not None else wait)
            wait *= self.backoff
        return out


@dataclass
class Step:
    id: str
    name: str
    action: str
    params: dict = field(default_factory=dict)
    when: str | None = None
    timeout: float | None = None
    retry: Retry = field(default_factory=Retry)
    on_failure: str = "abort"          # abort | continue | goto
    goto: str | None = None
    outputs: dict = field(default_factory=dict)
    gate: bool | None = None           # None: the action decides (asserts and checks are gates)
    always: bool = False
    description: str = ""
    line: int | None = None


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
    lines: dict = field(default_factory=dict)

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def index(self, step_id: str) -> int:
        for index, step in enumerate(self.steps):
            if step.id == step_id:
                return index
        raise KeyError(step_id)

    def line(self, *path) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None


# ---- line numbers ------------------------------------------------------------------------

def _node_lines(node, path: tuple = (), out: dict | None = None, dupes: list | None = None) -> dict:
    """Map every key path to its 1-based line (keys point at the key's line)."""
    if out is None:
        out = {}
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key, value in node.value:
            name = key.value
            if dupes is not None and name in seen:
                dupes.append((path + (name,), key.start_mark.line + 1))
            seen.add(name)
            out[path + (name,)] = key.start_mark.line + 1
            _node_lines(value, path + (name,), out, dupes)
            out[path + (name,)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            out[path + (index,)] = item.start_mark.line + 1
            _node_lines(item, path + (index,), out, dupes)
    return out


# ---- coercion ----------------------------------------------------------------------------

def coerce_input(spec: InputSpec, value: Any) -> Any:
    """Coerce a value (often a string from --input k=v) to the input's type."""
    kind = spec.type
    try:
        if value is None:
            return None
        if kind == "string":
            result = str(value)
        elif kind == "integer":
            if isinstance(value, bool):
                raise ValueError
            result = int(value) if not isinstance(value, float) or value.is_integer() else int("x")
        elif kind == "number":
            if isinstance(value, bool):
                raise ValueError
            result = float(value) if not isinstance(value, int) else value
            if isinstance(result, float) and result.is_integer() and isinstance(value, str) and "." not in value:
                result = int(result)
        elif kind == "boolean":
            if isinstance(value, bool):
                result = value
            elif str(value).lower() in ("true", "yes", "1", "on"):
                result = True
            elif str(value).lower() in ("false", "no", "0", "off"):
                result = False
            else:
                raise ValueError
        elif kind == "duration":
            result = parse_duration(value)
        elif kind == "list":
            result = value if isinstance(value, list) else [v.strip() for v in str(value).split(",") if v.strip()]
        else:
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(f"input {spec.name}: expected {kind}, got {value!r}") from None
    if spec.choices and result not in spec.choices:
        raise ConfigError(f"input {spec.name}: {result!r} is not one of {', '.join(map(str, spec.choices))}")
    return result


# ---- loading -----------------------------------------------------------------------------

def load_runbook(path: Path | str, *, check=None) -> Runbook:
    """Load and validate a runbook; raise RunbookInvalid listing every FILE:LINE problem.

    `check(runbook) -> list[Issue]` adds the action-level checks (known actions, parameters,
    operations that exist); the engine passes ragops.runbook.actions.check_runbook.
    """
    runbook, issues = parse_runbook(path)
    if runbook is not None and check is not None:
        issues.extend(check(runbook))
    if issues:
        raise RunbookInvalid(issues)
    return runbook


def parse_runbook(path: Path | str) -> tuple[Runbook | None, list[Issue]]:
    path = Path(path)
    label = str(path)
    try:
        text = path.read_text()
    except OSError as exc:
        return None, [Issue(label, None, f"cannot read: {exc.strerror}")]
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return None, [Issue(label, mark.line + 1 if mark else None, f"invalid YAML: {problem}")]
    if not isinstance(data, dict) or root is None:
        return None, [Issue(label, 1, "expected a mapping with name, description, inputs and steps")]
    dupes: list = []
    lines = _node_lines(root, (), None, dupes)
    issues: list[Issue] = []

    def add(where: tuple, message: str) -> None:
        line = None
        probe = where
        while probe:
            if probe in lines:
                line = lines[probe]
                break
            probe = probe[:-1]
        issues.append(Issue(label, line or 1, message))

    for where, line in dupes:
        issues.append(Issue(label, line, f"{_dotted(where)}: duplicate key"))
    for key in data:
        if key not in TOP_KEYS:
            add((key,), f"unknown key {key!r} (expected one of: {', '.join(sorted(TOP_KEYS))})")
    name = data.get("name")
    if not isinstance(name, str) or not STEP_ID.match(name or ""):
        add(("name",), "name: required, lowercase letters, digits and '-'")
        name = path.stem
    description = data.get("description") or ""
    if not isinstance(description, str):
        add(("description",), "description: expected text")
        description = str(description)

    inputs: dict[str, InputSpec] = {}
    raw_inputs = data.get("inputs") or {}
    if not isinstance(raw_inputs, dict):
        add(("inputs",), "inputs: expected a mapping of input name to {type, default, description}")
        raw_inputs = {}
    for input_name, body in raw_inputs.items():
        where = ("inputs", input_name)
        if body is None:
            body = {}
        if not isinstance(body, dict):
            body = {"default": body, "type": _guess_type(body)}
        for key in body:
            if key not in INPUT_KEYS:
                add(where + (key,), f"inputs.{input_name}: unknown key {key!r}")
        kind = body.get("type", _guess_type(body.get("default")))
        if kind not in INPUT_TYPES:
            add(where + ("type",), f"inputs.{input_name}.type: {kind!r} is not one of {', '.join(INPUT_TYPES)}")
            kind = "string"
        spec = InputSpec(name=str(input_name), type=kind, description=str(body.get("description") or ""),
                         choices=body.get("choices"),
                         required=bool(body.get("required", "default" not in body)))
        if "default" in body and body["default"] is not None:
            try:
                spec.default = coerce_input(spec, body["default"])
            except ConfigError as exc:
                add(where + ("default",), f"inputs.{input_name}.default: {exc.message.split(': ', 1)[1]}")
        inputs[str(input_name)] = spec

    steps: list[Step] = []
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        add(("steps",), "steps: required, a non-empty list")
        raw_steps = []
    ids: set[str] = set()
    for index, body in enumerate(raw_steps):
        where = ("steps", index)
        if not isinstance(body, dict):
            add(where, f"steps[{index}]: expected a mapping with id, name and action")
            continue
        step_id = body.get("id")
        label_id = f"steps[{index}]" if not isinstance(step_id, str) else f"step {step_id!r}"
        for key in body:
            if key not in STEP_KEYS:
                add(where + (key,), f"{label_id}: unknown key {key!r} (expected one of: {', '.join(sorted(STEP_KEYS))})")
        if not isinstance(step_id, str) or not STEP_ID.match(step_id):
            add(where + ("id",), f"{label_id}: id: required, lowercase letters, digits, '-' and '_'")
            step_id = f"step-{index + 1}"
        elif step_id in ids:
            add(where + ("id",), f"{label_id}: id is used twice")
        ids.add(step_id)
        action = body.get("action")
        if not isinstance(action, str) or not action:
            add(where + ("action",), f"{label_id}: action: required")
            action = ""
        params = body.get("with") or {}
        if not isinstance(params, dict):
            add(where + ("with",), f"{label_id}: with: expected a mapping of parameters")
            params = {}
        step = Step(id=step_id, name=str(body.get("name") or step_id), action=action, params=params,
                    description=str(body.get("description") or ""), line=lines.get(where))
        when = body.get("when")
        if when is not None:
            if isinstance(when, bool):
                when = "true" if when else "false"
            step.when = _strip_braces(str(when))
        if body.get("timeout") is not None:
            try:
                step.timeout = parse_duration(body["timeout"])
            except ValueError as exc:
                add(where + ("timeout",), f"{label_id}: timeout: {exc}")
        retry = body.get("retry")
        if retry is not None:
            if isinstance(retry, int) and not isinstance(retry, bool):
                retry = {"attempts": retry}
            if not isinstance(retry, dict):
                add(where + ("retry",), f"{label_id}: retry: expected {{attempts, delay, backoff}}")
            else:
                for key in retry:
                    if key not in RETRY_KEYS:
                        add(where + ("retry", key), f"{label_id}: retry: unknown key {key!r}")
                try:
                    step.retry = Retry(attempts=int(retry.get("attempts", 1)),
                                       delay=parse_duration(retry.get("delay", 0)),
                                       backoff=float(retry.get("backoff", 1)),
                                       max_delay=parse_duration(retry["max_delay"]) if "max_delay" in retry else None)
                    if step.retry.attempts < 1 or step.retry.backoff < 1:
                        raise ValueError("attempts must be >= 1 and backoff >= 1")
                except (TypeError, ValueError) as exc:
                    add(where + ("retry",), f"{label_id}: retry: {exc}")
        on_failure = body.get("on_failure", "abort")
        if isinstance(on_failure, dict) and set(on_failure) == {"goto"}:
            on_failure = f"goto:{on_failure['goto']}"
        if on_failure in ("abort", "continue"):
            step.on_failure = on_failure
        elif isinstance(on_failure, str) and on_failure.startswith("goto:"):
            step.on_failure, step.goto = "goto", on_failure.split(":", 1)[1].strip()
        else:
            add(where + ("on_failure",), f"{label_id}: on_failure: expected abort, continue or goto:<step>, got {on_failure!r}")
        for flag in ("gate", "always"):
            if flag in body:
                if not isinstance(body[flag], bool):
                    add(where + (flag,), f"{label_id}: {flag}: expected true or false")
                else:
                    setattr(step, flag, body[flag])
        outputs = body.get("outputs") or {}
        if not isinstance(outputs, dict):
            add(where + ("outputs",), f"{label_id}: outputs: expected a mapping of name to template")
            outputs = {}
        step.outputs = outputs
        steps.append(step)

    outputs = data.get("outputs") or {}
    if not isinstance(outputs, dict):
        add(("outputs",), "outputs: expected a mapping of name to template")
        outputs = {}
    drill = data.get("drill") or {}
    if not isinstance(drill, dict):
        add(("drill",), "drill: expected {rto: {from, to}, rpo: template}")
        drill = {}

    runbook = Runbook(name=name, description=description, inputs=inputs, steps=steps, outputs=outputs,
                      drill=drill, path=path, text=text, lines=lines)
    issues.extend(_check_references(runbook, label))
    return runbook, issues


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


def _dotted(path: tuple) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out


def _check_references(runbook: Runbook, label: str) -> list[Issue]:
    """Expressions parse; references name declared inputs and existing (earlier) steps; gotos exist."""
    issues: list[Issue] = []
    ids = [s.id for s in runbook.steps]

    def check_expr(text: str, where: tuple, position: int | None, allow_result: bool) -> None:
        try:
            tree = expr.parse(text)
        except expr.ExpressionError as exc:
            issues.append(Issue(label, runbook.line(*where), exc.message))
            return
        for ref in expr.references(tree):
            root = ref[0]
            if root not in ROOTS or (root == "result" and not allow_result):
                issues.append(Issue(label, runbook.line(*where),
                                    f"unknown reference {'.'.join(map(str, ref))!r} (roots: inputs, steps, config, env, run)"))
            elif root == "inputs" and len(ref) > 1 and ref[1] not in runbook.inputs:
                issues.append(Issue(label, runbook.line(*where), f"unknown input {ref[1]!r}"
                                    f" (declared: {', '.join(runbook.inputs) or 'none'})"))
            elif root == "steps" and len(ref) > 1:
                if ref[1] not in ids:
                    issues.append(Issue(label, runbook.line(*where), f"unknown step {ref[1]!r} in reference "
                                        f"{'.'.join(map(str, ref))!r}"))
                elif position is not None and ids.index(ref[1]) >= position:
                    issues.append(Issue(label, runbook.line(*where), f"step {ref[1]!r} runs after this one; "
                                        f"its outputs are not available yet"))
                elif len(ref) > 2 and ref[2] not in ("outputs", "status", "error", "duration", "attempts"):
                    issues.append(Issue(label, runbook.line(*where), f"steps.{ref[1]}.{ref[2]}: expected outputs, "
                                        f"status, error, duration or attempts"))

    for index, step in enumerate(runbook.steps):
        base = ("steps", index)
        if step.when:
            check_expr(step.when, base + ("when",), index, False)
        for text in expr.template_expressions(step.params):
            check_expr(text, base + ("with",), index, False)
        for key, value in step.outputs.items():
            for text in expr.template_expressions(value):
                check_expr(text, base + ("outputs", key), index + 1, True)
        if step.on_failure == "goto" and step.goto not in ids:
            issues.append(Issue(label, runbook.line(*base, "on_failure"),
                                f"step {step.id!r}: on_failure: goto target {step.goto!r} is not a step of this runbook"))
    for key, value in runbook.outputs.items():
        for text in expr.template_expressions(value):
            check_expr(text, ("outputs", key), None, False)
    rto = runbook.drill.get("rto") if isinstance(runbook.drill, dict) else None
    for key in ("rto", "rpo"):
        value = runbook.drill.get(key) if isinstance(runbook.drill, dict) else None
        if isinstance(value, str):
            for text in expr.template_expressions(value) or [value]:
                check_expr(text, ("drill", key), None, False)
    if isinstance(rto, dict):
        for key in ("from", "to"):
            if rto.get(key) not in ids:
                issues.append(Issue(label, runbook.line("drill", "rto", key),
                                    f"drill.rto.{key}: {rto.get(key)!r} is not a step of this runbook"))
    return issues


# ---- finding runbooks --------------------------------------------------------------------

def runbook_dirs(config=None) -> list[Path]:
    """Where runbooks are looked up: the configured dir, then the one shipped with ragops."""
    dirs: list[Path] = []
    if config is not None:
        dirs.append(config.resolve_path(config.env.runbooks.dir))
    shipped = Path(__file__).resolve().parents[2] / "runbooks"
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
