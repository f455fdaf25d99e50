"""YAML files whose errors name FILE:LINE: path: message (ragops.yaml and runbooks share this).

`load(text)` parses once and keeps the node tree, so any key path (a pydantic error location, a
runbook step's parameter) can be turned back into the line a person has to edit. Duplicate keys,
which plain YAML loading silently resolves to the last one, are reported with both lines.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from ragops.errors import ConfigError
from ragops.yamlbounds import BoundedLoader, decode, explicit_pairs, read_limited


@dataclass
class Problem:
    """One error in a file: where (line, key path) and what."""
    line: int | None
    path: str                      # dotted key path, "" for the whole file
    message: str

    def text(self) -> str:
        """`path: message` (the part after FILE:LINE:)."""
        return f"{self.path}: {self.message}" if self.path else self.message

    def format(self, label: str) -> str:
        where = f"{label}:{self.line}" if self.line else label
        return f"{where}: {self.text()}"


class YamlSyntaxError(Exception):
    """The text is not YAML; `problem` says where."""

    def __init__(self, problem: Problem):
        super().__init__(problem.message)
        self.problem = problem


def load(text: str) -> tuple[Any, yaml.Node | None]:
    """The data and its node tree (None for an empty document); YamlSyntaxError when invalid,
    too deep, or too large with its aliases expanded (ragops.yamlbounds)."""
    loader = None
    try:
        loader = BoundedLoader(text)   # the reader checks every character here
        root = loader.get_single_node()
        if root is not None:
            string_keys(root)
        data = loader.construct_document(root) if root is not None else None
    except yaml.reader.ReaderError as exc:   # a control character: it has a position, not a mark
        line = text.count("\n", 0, exc.position) + 1
        raise YamlSyntaxError(Problem(line, "", f"invalid YAML: character {exc.character!r} is not allowed")) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise YamlSyntaxError(Problem(mark.line + 1 if mark else None, "", f"invalid YAML: {problem}")) from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, root


def read_text(path: Path) -> str:
    """A YAML file's text: at most MAX_FILE_BYTES of UTF-8; OSError when unreadable, YamlSyntaxError
    (naming the line) when too large or not UTF-8 text."""
    data = read_limited(path)   # ValueError when too large
    text, line, reason = decode(data)
    if text is None:
        raise YamlSyntaxError(Problem(line, "", reason))
    return text


BOOL_TAG = "tag:yaml.org,2002:bool"


def string_keys(node: yaml.Node) -> None:
    """YAML 1.1 reads a key `on:` (or off, yes, no, y, n) as a boolean; as a mapping key it is the
    word written (`notify.on:` as documented). Only true/false stay booleans."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if (isinstance(key, yaml.ScalarNode) and key.tag == BOOL_TAG and not key.style
                    and key.value.lower() not in ("true", "false")):
                key.tag = "tag:yaml.org,2002:str"
            string_keys(value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            string_keys(item)


def duplicate_keys(root: yaml.Node | None, path: tuple = (), seen: set[int] | None = None) -> list[Problem]:
    """Every key written twice in one mapping, naming the line of each. Keys a merge key (`<<`)
    brings in are not duplicates: the mapping's own keys override them. A node an alias repeats
    is checked once."""
    found: list[Problem] = []
    seen = set() if seen is None else seen
    if id(root) in seen:
        return found
    seen.add(id(root))
    if isinstance(root, yaml.MappingNode):
        first: dict[Any, int] = {}
        for key, value in explicit_pairs(root):
            line = key.start_mark.line + 1
            if key.value in first:
                found.append(Problem(line, format_loc(path + (key.value,)),
                                     f"duplicate key (first on line {first[key.value]}, again on line {line})"))
            else:
                first[key.value] = line
            found.extend(duplicate_keys(value, path + (key.value,), seen))
    elif isinstance(root, yaml.SequenceNode):
        for index, item in enumerate(root.value):
            found.extend(duplicate_keys(item, path + (index,), seen))
    return found


def format_loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def line_of(root: yaml.Node | None, loc: tuple) -> int | None:
    """The line of a key path: a mapping key's own line, a list item's line; when the path goes
    further than the file (a default, a missing key), the line of the deepest part that exists."""
    node, line = root, None
    if node is not None:
        line = node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if pair is None:
                break
            line, node = pair[0].start_mark.line + 1, pair[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def validation_problems(root: yaml.Node | None, exc: ValidationError, prefix: tuple = ()) -> list[Problem]:
    """Every pydantic error as a Problem naming the user's key path and its line."""
    return [_problem(root, err, prefix) for err in exc.errors()]


def _problem(root: yaml.Node | None, err: ErrorDetails, prefix: tuple) -> Problem:
    # pydantic puts union/function names into loc; keep the user's key path only
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
    msg = err["msg"]
    for noise in ("Value error, ", "Assertion failed, "):
        msg = msg.replace(noise, "")
    if err["type"] == "extra_forbidden":
        msg = f"unknown key {loc[-1]!r}"
    elif err["type"] == "missing":
        msg = "required key is missing"
    elif err["type"] == "literal_error":
        msg = f"{msg}, got {err.get('input')!r}"
    # a model validator may name a sub-path itself, e.g. "hosts[1]: ..." or "regions.x.database_node: ..."
    sub = re.match(r"^([\w.\-]+)?((?:\[\d+\])*): (.*)$", msg)
    if sub and (sub.group(1) or sub.group(2)) and err["type"] in ("value_error", "assertion_error"):
        loc = loc + tuple(p for p in (sub.group(1) or "").split(".") if p)
        loc = loc + tuple(int(i) for i in re.findall(r"\d+", sub.group(2) or ""))
        msg = sub.group(3)
    full = format_loc(prefix + loc)
    return Problem(line_of(root, prefix + loc), full or "(top level)", msg)


def config_error(label: str, root: yaml.Node | None, exc: ValidationError, prefix: tuple = ()) -> ConfigError:
    """The first validation error as a one-line ConfigError: `FILE:LINE: path: message`."""
    return ConfigError(validation_problems(root, exc, prefix)[0].format(label))


def read_file_text(path: Path, label: str) -> str:
    """`read_text` for files that stop at the first problem: a ConfigError naming FILE:LINE when
    too large or not UTF-8 (OSError as it comes, for the caller's own message)."""
    try:
        return read_text(path)
    except ValueError as exc:
        raise ConfigError(f"{label}: {exc}") from None
    except YamlSyntaxError as exc:
        raise ConfigError(exc.problem.format(label)) from None


def load_file_text(text: str, label: str) -> tuple[Any, yaml.Node | None]:
    """`load` for files that stop at the first problem (ragops.yaml): a syntax error or a
    duplicate key is a ConfigError naming FILE:LINE."""
    try:
        data, root = load(text)
    except YamlSyntaxError as exc:
        raise ConfigError(exc.problem.format(label)) from None
    duplicates = duplicate_keys(root)
    if duplicates:
        raise ConfigError(duplicates[0].format(label))
    return data, root
