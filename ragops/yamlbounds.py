"""Limits on YAML that ragops reads (ragops.yaml, runbooks): hostile input fails fast, with a line.

Why: PyYAML's SafeLoader is safe from code execution but not from size. A 1 KB "billion laughs"
file (9 levels of 9 aliases) is 9^9 nodes once every alias is followed; the loader itself shares
the objects, but every walk after it (duplicate keys, merging environments, pydantic) follows them
all and hung for minutes. 20,000 nested brackets or an alias inside its own anchor ended in a
RecursionError. Here the composer counts, while it builds the node tree, how many nodes the
document would have with every alias expanded, and how deep it nests, and stops at the first node
past a limit: the refusal costs what the file costs to read, not what it expands to.

Documented limits (README "Configuration limits"): MAX_FILE_BYTES, MAX_DEPTH, MAX_NODES.
"""
from __future__ import annotations

from pathlib import Path

import yaml
from yaml.composer import ComposerError
from yaml.scanner import ScannerError

MAX_FILE_BYTES = 1024 * 1024   # ragops.yaml and a runbook; the example ragops.yaml is ~10 KB
MAX_DEPTH = 64                 # nested mappings/lists; the schema itself is at most ~8 deep
MAX_NODES = 200_000            # nodes with every alias expanded (a long string counts per 256 characters)


class BoundedLoader(yaml.SafeLoader):
    """SafeLoader whose composer refuses too deep nesting, too many expanded nodes and an alias
    used inside its own anchor (a recursive structure)."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._expanded = 0
        self._sizes: dict[int, int] = {}     # id(node) -> its size with aliases expanded

    def fetch_flow_collection_start(self, TokenClass):
        # the scanner looks ahead across open brackets (each may start a key): stop it early
        if self.flow_level >= MAX_DEPTH:
            raise ScannerError(None, None, f"nested more than {MAX_DEPTH} levels deep", self.get_mark())
        super().fetch_flow_collection_start(TokenClass)

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None:
                size = self._sizes.get(id(target))
                if size is None:
                    raise ComposerError(None, None, f"alias *{event.anchor} is used inside its own anchor "
                                        "(a recursive structure)", event.start_mark)
                self._count(size, event.start_mark)
            return super().compose_node(parent, index)
        mark = self.peek_event().start_mark
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", mark)
        start = self._expanded
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        own = 1 + (len(node.value) // 256 if isinstance(node, yaml.ScalarNode) else 0)
        self._count(own, mark)
        self._sizes[id(node)] = self._expanded - start
        return node

    def flatten_mapping(self, node):
        # keep the pairs as written: duplicate keys are judged on them, not on what merges added
        if not hasattr(node, "explicit_pairs"):
            node.explicit_pairs = [(k, v) for k, v in node.value if k.tag != "tag:yaml.org,2002:merge"]
        super().flatten_mapping(node)

    def _count(self, size: int, mark) -> None:
        self._expanded += size
        if self._expanded > MAX_NODES:
            raise ComposerError(None, None, f"more than {MAX_NODES} values with every alias expanded "
                                "(an alias bomb?)", mark)


def decode(data: bytes) -> tuple[str | None, int | None, str]:
    """(text, None, "") for UTF-8 text; (None, line, reason) for anything else."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return None, 1, "the file is UTF-16; save it as UTF-8"
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    nul = data.find(b"\x00")
    if nul >= 0:
        return None, data.count(b"\n", 0, nul) + 1, "NUL byte: not a text file (UTF-16 or binary?); save it as UTF-8"
    try:
        return data.decode("utf-8"), None, ""
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        return None, line, f"byte 0x{data[exc.start]:02x} at column {column} is not UTF-8; save the file as UTF-8"


def read_limited(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """The file's bytes; ValueError when it is larger than `limit` (read no further than that)."""
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"larger than {limit // 1024} KiB (the limit for a YAML file ragops reads)")
    return data


def explicit_pairs(node: yaml.MappingNode) -> list:
    """A mapping's own (key, value) node pairs, without the merge keys and what they brought in
    (the constructor flattens merges into node.value; BoundedLoader keeps the original list)."""
    pairs = getattr(node, "explicit_pairs", None)
    if pairs is None:
        pairs = [(k, v) for k, v in node.value if k.tag != "tag:yaml.org,2002:merge"]
    return pairs
