#!/usr/bin/env python3
"""Check ragops/'s layering; exit 1 on a package circle, an upward import or a private name used across modules.

    python scripts/layers.py            # prints the package graph by layer, then every violation
    python scripts/layers.py --quiet    # violations only

The layer table is the one in README.md's Architecture section (between the `layers:begin` and
`layers:end` markers): a package may import its own layer and the layers below it. A package is a
directory under ragops/ or a top-level module. Imports count at any depth (inside functions too);
`if TYPE_CHECKING:` blocks are left out, they never run. A private name is a `_name` (not `__dunder__`)
imported from another ragops module or read as an attribute of one (`module._name`, `Class._name`).
Nothing is imported: the graph is built from the source with ast.
"""
from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from import_cycles import cycles, module_name, resolve, walk

REPO = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^\|\s*(\d+)\s+(\w[\w ]*?)\s*\|(.*?)\|")


EXCEPTION = re.compile(r"^- `(\w+) -> (\w+)`")


def _table(readme: Path) -> list[str]:
    text = readme.read_text()
    start, end = text.find("<!-- layers:begin"), text.find("<!-- layers:end -->")
    if start < 0 or end < start:
        raise SystemExit(f"{readme}: no layer table (<!-- layers:begin ... <!-- layers:end -->)")
    return text[start:end].splitlines()


def read_exceptions(readme: Path) -> set[tuple[str, str]]:
    """The upward edges the README still lists as known (`- `a -> b``): not reported, and left out of the
    circle search, so a new edge that closes another circle is still found."""
    return {(m.group(1), m.group(2)) for line in _table(readme) if (m := EXCEPTION.match(line))}


def read_layers(readme: Path) -> dict[str, tuple[int, str]]:
    """package -> (layer number, layer name), from the README table between the markers."""
    layers: dict[str, tuple[int, str]] = {}
    for line in _table(readme):
        match = ROW.match(line)
        if not match:
            continue
        number, name = int(match.group(1)), match.group(2)
        for package in re.findall(r"`([\w.]+)/?`", match.group(3)):
            package = package.removesuffix(".py")
            if package in layers:
                raise SystemExit(f"{readme}: {package} is in two layers")
            layers[package] = (number, name)
    return layers


def package_of(module: str) -> str:
    """ragops.pg.pgctl -> pg; ragops.config -> config; ragops -> ragops (the root: __version__ only)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


class Scan:
    """The import edges and private-name uses of one source tree."""

    def __init__(self, root: Path):
        self.root = root
        self.files = sorted(root.rglob("*.py"))
        self.modules = {module_name(root, f) for f in self.files}
        self.edges: dict[str, dict[str, list[str]]] = {}   # package -> package -> ["module:line -> module"]
        self.private: list[str] = []
        for path in self.files:
            self._scan(path)

    def _target(self, name: str) -> str | None:
        while name and name not in self.modules:   # `import a.b.c` of an attribute, `from a import name`
            name = name.rpartition(".")[0]
        return name or None

    def _scan(self, path: Path) -> None:
        current = module_name(self.root, path)
        tree = ast.parse(path.read_text(), str(path))
        bound: dict[str, str] = {}   # local name -> ragops module it is, or module it came from (for Class._x)
        for node in walk(tree, True):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    target = self._target(alias.name)
                    if target:
                        self._edge(current, target, node.lineno)
                        bound[alias.asname or alias.name.partition(".")[0]] = \
                            target if alias.asname else self.root.name
            elif isinstance(node, ast.ImportFrom):
                base = resolve(node.module, node.level, current, path.name == "__init__.py")
                if self._target(base) is None:
                    continue
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    target = full if full in self.modules else self._target(base)
                    assert target is not None
                    self._edge(current, target, node.lineno)
                    if target != full and self._private(alias.name) and target != current:
                        self.private.append(f"{current}:{node.lineno} imports {target}.{alias.name}")
                    bound[alias.asname or alias.name] = target
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and self._private(node.attr) and isinstance(node.value, ast.Name):
                origin = bound.get(node.value.id)
                if origin and origin != current:
                    self.private.append(f"{current}:{node.lineno} reads {node.value.id}.{node.attr} ({origin})")

    @staticmethod
    def _private(name: str) -> bool:
        return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))

    def _edge(self, current: str, target: str, line: int) -> None:
        a, b = package_of(current), package_of(target)
        if a != b and b != self.root.name:
            sites = self.edges.setdefault(a, {}).setdefault(b, [])
            if f"{current}:{line} -> {target}" not in sites:
                sites.append(f"{current}:{line} -> {target}")

    def packages(self) -> set[str]:
        return {package_of(m) for m in self.modules} - {self.root.name}


def check(root: Path, readme: Path, quiet: bool = False) -> int:
    layers, known = read_layers(readme), read_exceptions(readme)
    scan = Scan(root)
    problems: list[str] = []
    notes = [f"unlisted: {package} is in no layer of the README's table (add it to its row)"
             for package in sorted(scan.packages() - set(layers))]
    graph = {a: set(b) for a, b in scan.edges.items()}
    checked = {a: {b for b in targets if (a, b) not in known} for a, targets in graph.items()}
    for component in cycles(checked):
        edges = [f"{a} -> {b}" for a in component for b in sorted(checked.get(a, ())) if b in component]
        problems.append(f"circle: {' '.join(component)} ({', '.join(edges)})")
    notes += [f"known: {a} -> {b} (listed in the README, to be removed)" for a, b in sorted(known) if b in graph.get(a, ())]
    notes += [f"stale: {a} -> {b} is listed as known but gone: remove the line" for a, b in sorted(known)
              if b not in graph.get(a, ())]
    for a in sorted(scan.edges):
        for b, sites in sorted(scan.edges[a].items()):
            if (a, b) in known:
                continue
            if a in layers and b in layers and layers[b][0] > layers[a][0]:
                problems.append(f"upward: {a} ({layers[a][1]}) -> {b} ({layers[b][1]}): " + "; ".join(sites))
    problems += [f"private: {p}" for p in scan.private]
    if not quiet:
        by_layer = sorted(scan.packages(), key=lambda p: (-layers.get(p, (99, ""))[0], p))
        for package in by_layer:
            number, name = layers.get(package, (0, "?"))
            print(f"{number} {name:<11} {package:<14} -> {' '.join(sorted(graph.get(package, ()))) or '-'}")
    for line in notes + problems:
        print(line)
    print(f"{len(scan.packages())} packages, {len(scan.modules)} modules: "
          f"{len(problems)} layering problem(s)", file=sys.stderr)
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("package", nargs="?", default=str(REPO / "ragops"))
    parser.add_argument("--readme", default=str(REPO / "README.md"))
    parser.add_argument("--quiet", action="store_true", help="print the problems only")
    args = parser.parse_args(argv)
    return check(Path(args.package).resolve(), Path(args.readme), args.quiet)


if __name__ == "__main__":
    sys.exit(main())
