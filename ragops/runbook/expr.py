"""A small, safe expression language for `when`, `assert` and `{{ ... }}` templates.

Grammar (nothing else is accepted; there is no attribute access on Python objects, no calls
other than the whitelisted functions below, and never `eval`):

    expr    := or
    or      := and ("or" and)*
    and     := not ("and" not)*
    not     := "not" not | cmp
    cmp     := sum (("==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not in") sum)*
    sum     := prod (("+" | "-") prod)*
    prod    := unary (("*" | "/" | "%") unary)*
    unary   := "-" unary | primary
    primary := NUMBER | STRING | true | false | null | ref | func "(" args ")"
             | "(" expr ")" | "[" [expr ("," expr)*] "]"
    ref     := NAME ("." NAME | "[" (NUMBER | STRING) "]")*

References are looked up in plain dicts/lists (the run context: `inputs`, `steps`, `config`,
`env`, `run`, `result`). Functions: len, int, float, str, lower, upper, abs, min, max, round,
default(value, fallback).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ragops.errors import RagopsError


class ExpressionError(RagopsError):
    """A malformed expression, or a reference that does not resolve."""


_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<num>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,|\.|\+|-|\*|/|%)
  | (?P<name>[A-Za-z_][A-Za-z0-9_\-]*)
""", re.VERBOSE)

KEYWORDS = {"and", "or", "not", "in", "true", "false", "null", "none", "True", "False", "None"}


def _default(value, fallback):
    return fallback if value is None else value


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "len": len, "int": int, "float": float, "str": str, "abs": abs, "min": min, "max": max,
    "round": round, "lower": lambda s: str(s).lower(), "upper": lambda s: str(s).upper(),
    "default": _default, "bool": bool,
}

_MISSING = object()


def tokenize(text: str) -> list[tuple[str, Any, int]]:
    tokens: list[tuple[str, Any, int]] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or not match.lastgroup:   # every alternative is a named group
            raise ExpressionError(f"unexpected character {text[pos]!r} at column {pos + 1} in {text!r}")
        kind = match.lastgroup
        value = match.group(kind)
        if kind == "num":
            tokens.append(("num", float(value) if any(c in value for c in ".eE") else int(value), pos))
        elif kind == "str":
            body = value[1:-1]
            body = re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)
            tokens.append(("str", body, pos))
        elif kind == "op":
            tokens.append(("op", value, pos))
        elif kind == "name":
            tokens.append(("kw" if value in KEYWORDS else "name", value, pos))
        pos = match.end()
    tokens.append(("end", None, len(text)))
    return tokens


class _Parser:
    """Builds a tuple AST: ("lit", v) ("ref", [parts]) ("not", e) ("and"/"or", a, b)
    ("cmp", op, a, b) ("bin", op, a, b) ("neg", e) ("list", [e]) ("call", name, [e])."""

    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0

    def peek(self, offset: int = 0):
        return self.tokens[min(self.index + offset, len(self.tokens) - 1)]

    def take(self):
        token = self.tokens[self.index]
        self.index += 1
        return token

    def accept(self, kind: str, value: Any = None) -> bool:
        token = self.peek()
        if token[0] == kind and (value is None or token[1] == value):
            self.index += 1
            return True
        return False

    def expect(self, kind: str, value: Any = None):
        token = self.peek()
        if token[0] != kind or (value is not None and token[1] != value):
            self.fail(f"expected {value or kind}")
        return self.take()

    def fail(self, message: str):
        token = self.peek()
        found = "end of expression" if token[0] == "end" else repr(token[1])
        raise ExpressionError(f"{message}, found {found} at column {token[2] + 1} in {self.text!r}")

    def parse(self):
        if self.peek()[0] == "end":
            raise ExpressionError("empty expression")
        node = self.parse_or()
        if self.peek()[0] != "end":
            self.fail("unexpected token")
        return node

    def parse_or(self):
        node = self.parse_and()
        while self.accept("kw", "or"):
            node = ("or", node, self.parse_and())
        return node

    def parse_and(self):
        node = self.parse_not()
        while self.accept("kw", "and"):
            node = ("and", node, self.parse_not())
        return node

    def parse_not(self):
        if self.accept("kw", "not"):
            return ("not", self.parse_not())
        return self.parse_cmp()

    def parse_cmp(self):
        node = self.parse_sum()
        while True:
            token = self.peek()
            if token[0] == "op" and token[1] in ("==", "!=", "<", "<=", ">", ">="):
                self.take()
                node = ("cmp", token[1], node, self.parse_sum())
            elif token == ("kw", "in", token[2]):
                self.take()
                node = ("cmp", "in", node, self.parse_sum())
            elif token[0] == "kw" and token[1] == "not" and self.peek(1)[:2] == ("kw", "in"):
                self.take()
                self.take()
                node = ("cmp", "not in", node, self.parse_sum())
            else:
                return node

    def parse_sum(self):
        node = self.parse_prod()
        while self.peek()[0] == "op" and self.peek()[1] in ("+", "-"):
            op = self.take()[1]
            node = ("bin", op, node, self.parse_prod())
        return node

    def parse_prod(self):
        node = self.parse_unary()
        while self.peek()[0] == "op" and self.peek()[1] in ("*", "/", "%"):
            op = self.take()[1]
            node = ("bin", op, node, self.parse_unary())
        return node

    def parse_unary(self):
        if self.accept("op", "-"):
            return ("neg", self.parse_unary())
        return self.parse_primary()

    def parse_primary(self):
        kind, value, _ = self.peek()
        if kind in ("num", "str"):
            self.take()
            return ("lit", value)
        if kind == "kw" and value in ("true", "True"):
            self.take()
            return ("lit", True)
        if kind == "kw" and value in ("false", "False"):
            self.take()
            return ("lit", False)
        if kind == "kw" and value in ("null", "none", "None"):
            self.take()
            return ("lit", None)
        if kind == "op" and value == "(":
            self.take()
            node = self.parse_or()
            self.expect("op", ")")
            return node
        if kind == "op" and value == "[":
            self.take()
            items = []
            if not self.accept("op", "]"):
                items.append(self.parse_or())
                while self.accept("op", ","):
                    items.append(self.parse_or())
                self.expect("op", "]")
            return ("list", items)
        if kind == "name":
            self.take()
            if self.peek()[:2] == ("op", "("):
                if value not in FUNCTIONS:
                    raise ExpressionError(f"unknown function {value!r} in {self.text!r} "
                                          f"(known: {', '.join(sorted(FUNCTIONS))})")
                self.take()
                args = []
                if not self.accept("op", ")"):
                    args.append(self.parse_or())
                    while self.accept("op", ","):
                        args.append(self.parse_or())
                    self.expect("op", ")")
                return ("call", value, args)
            parts: list[Any] = [value]
            while True:
                if self.accept("op", "."):
                    token = self.peek()
                    if token[0] not in ("name", "kw", "num"):
                        self.fail("expected a name after '.'")
                    self.take()
                    parts.append(token[1])
                elif self.peek()[:2] == ("op", "["):
                    self.take()
                    token = self.peek()
                    if token[0] not in ("num", "str"):
                        self.fail("expected a number or string index")
                    self.take()
                    parts.append(token[1])
                    self.expect("op", "]")
                else:
                    break
            return ("ref", parts)
        self.fail("expected a value")


_CACHE: dict[str, tuple] = {}


def parse(text: str) -> tuple:
    """Parse an expression into an AST (raises ExpressionError)."""
    if not isinstance(text, str):
        raise ExpressionError(f"expected an expression string, got {type(text).__name__}")
    tree = _CACHE.get(text)
    if tree is None:
        tree = _Parser(text).parse()
        _CACHE[text] = tree
    return tree


def references(tree: tuple) -> list[list[Any]]:
    """Every dotted reference in an AST (for validation)."""
    kind = tree[0]
    if kind == "ref":
        return [tree[1]]
    if kind == "lit":
        return []
    out: list[list[Any]] = []
    for child in tree[1:]:
        if isinstance(child, tuple):
            out.extend(references(child))
        elif isinstance(child, list):
            for item in child:
                if isinstance(item, tuple):
                    out.extend(references(item))
    return out


def lookup(context: dict, parts: list[Any], *, strict: bool = True) -> Any:
    value: Any = context
    for index, part in enumerate(parts):
        in_dict = isinstance(value, dict) and part in value
        in_list = isinstance(value, (list, tuple)) and isinstance(part, int) and -len(value) <= part < len(value)
        if in_dict or in_list:
            value = value[part]
        else:
            if not strict:
                return None
            dotted = ".".join(str(p) for p in parts[:index + 1])
            raise ExpressionError(f"unknown reference {dotted!r}")
    return value


def _compare(op: str, left: Any, right: Any) -> bool:
    try:
        if op == "==":
            return left == right
        if op == "!=":
            return left != right
        if op == "in":
            return left in right
        if op == "not in":
            return left not in right
        if left is None or right is None:
            raise ExpressionError(f"cannot compare {left!r} {op} {right!r}")
        return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]
    except TypeError:
        raise ExpressionError(f"cannot compare {left!r} {op} {right!r}") from None


def evaluate_tree(tree: tuple, context: dict) -> Any:
    kind = tree[0]
    if kind == "lit":
        return tree[1]
    if kind == "ref":
        return lookup(context, tree[1])
    if kind == "not":
        return not evaluate_tree(tree[1], context)
    if kind == "and":
        left = evaluate_tree(tree[1], context)
        return evaluate_tree(tree[2], context) if left else left
    if kind == "or":
        left = evaluate_tree(tree[1], context)
        return left if left else evaluate_tree(tree[2], context)
    if kind == "cmp":
        return _compare(tree[1], evaluate_tree(tree[2], context), evaluate_tree(tree[3], context))
    if kind == "neg":
        value = evaluate_tree(tree[1], context)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ExpressionError(f"cannot negate {value!r}")
        return -value
    if kind == "bin":
        op, left, right = tree[1], evaluate_tree(tree[2], context), evaluate_tree(tree[3], context)
        try:
            if op == "+":
                if isinstance(left, str) or isinstance(right, str):
                    return f"{left}{right}"
                return left + right
            if op == "-":
                return left - right
            if op == "*":
                if isinstance(left, str) or isinstance(right, str):
                    raise TypeError
                return left * right
            if op == "/":
                return left / right
            if op == "%":
                return left % right
        except (TypeError, ZeroDivisionError) as exc:
            raise ExpressionError(f"cannot compute {left!r} {op} {right!r}"
                                  f"{': division by zero' if isinstance(exc, ZeroDivisionError) else ''}") from None
    if kind == "list":
        return [evaluate_tree(item, context) for item in tree[1]]
    if kind == "call":
        if tree[1] == "default" and tree[2] and tree[2][0][0] == "ref":  # default(missing.ref, x)
            args = [lookup(context, tree[2][0][1], strict=False)]
            args += [evaluate_tree(item, context) for item in tree[2][1:]]
        else:
            args = [evaluate_tree(item, context) for item in tree[2]]
        try:
            return FUNCTIONS[tree[1]](*args)
        except (TypeError, ValueError) as exc:
            raise ExpressionError(f"{tree[1]}(): {exc}") from None
    raise ExpressionError(f"unsupported expression node {kind!r}")  # pragma: no cover


def evaluate(text: str, context: dict) -> Any:
    """Evaluate one expression against a context of plain dicts/lists."""
    return evaluate_tree(parse(text), context)


# ---- templates ---------------------------------------------------------------------------

_TEMPLATE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)


def template_expressions(value: Any) -> list[str]:
    """Every `{{ expr }}` inside a (nested) value."""
    out: list[str] = []
    if isinstance(value, str):
        out.extend(m.group(1).strip() for m in _TEMPLATE.finditer(value))
    elif isinstance(value, dict):
        for item in value.values():
            out.extend(template_expressions(item))
    elif isinstance(value, list):
        for item in value:
            out.extend(template_expressions(item))
    return out


def render(value: Any, context: dict) -> Any:
    """Render `{{ expr }}` inside strings of a nested value. A string that is exactly one
    template keeps the expression's type (a number stays a number)."""
    if isinstance(value, str):
        whole = _TEMPLATE.fullmatch(value.strip())
        if whole and value.count("{{") == 1:
            return evaluate(whole.group(1).strip(), context)
        return _TEMPLATE.sub(lambda m: to_text(evaluate(m.group(1).strip(), context)), value)
    if isinstance(value, dict):
        return {k: render(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, context) for v in value]
    return value


def to_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
