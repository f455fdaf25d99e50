"""scripts/layers.py on small synthetic trees: a circle, an upward import, a private name -> exit 1."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = """# pkg
<!-- layers:begin -->
| layer | packages | what |
|---|---|---|
| 1 foundation | `base` `util` | |
| 2 engines | `engine` `other` | |
| 3 cli | `cli` | |
<!-- layers:end -->
"""


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for name, text in {"__init__.py": "", "base.py": "X = 1\n", "util.py": "", "engine/__init__.py": "",
                       "engine/run.py": "", "other.py": "", "cli/__init__.py": "", **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    (tmp_path / "README.md").write_text(README)
    return root


def _check(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "layers.py"), str(root),
                           "--readme", str(root.parent / "README.md")], capture_output=True, text=True, timeout=60)


def test_a_layered_tree_passes_and_prints_its_graph(tmp_path):
    root = _tree(tmp_path, {"engine/run.py": "from pkg.base import X\nfrom pkg import util\n",
                            "cli/__init__.py": "import pkg.engine.run\n"})
    proc = _check(root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 engines     engine         -> base util" in proc.stdout
    assert "3 cli         cli            -> engine" in proc.stdout


def test_a_circle_through_a_lazy_import_fails(tmp_path):
    root = _tree(tmp_path, {"engine/run.py": "def f():\n    from pkg import other\n",
                            "other.py": "from pkg.engine.run import f\n"})
    proc = _check(root)
    assert proc.returncode == 1
    assert "circle: engine other (engine -> other, other -> engine)" in proc.stdout


def test_an_import_under_type_checking_is_left_out(tmp_path):
    root = _tree(tmp_path, {"engine/run.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import other\n",
                            "other.py": "from pkg.engine.run import f\n"})
    assert _check(root).returncode == 0


def test_an_upward_import_fails(tmp_path):
    root = _tree(tmp_path, {"base.py": "def f():\n    import pkg.cli\n"})
    proc = _check(root)
    assert proc.returncode == 1
    assert "upward: base (foundation) -> cli (cli): pkg.base:2 -> pkg.cli" in proc.stdout


def test_a_private_name_from_another_module_fails_imported_or_read(tmp_path):
    root = _tree(tmp_path, {"util.py": "def _helper(): pass\nclass Thing:\n    def _inner(self): pass\n",
                            "engine/run.py": "from pkg.util import _helper\n",
                            "other.py": "from pkg import util\nfrom pkg.util import Thing\nutil._helper()\nThing._inner\n"})
    proc = _check(root)
    assert proc.returncode == 1
    assert "private: pkg.engine.run:1 imports pkg.util._helper" in proc.stdout
    assert "private: pkg.other:3 reads util._helper (pkg.util)" in proc.stdout
    assert "private: pkg.other:4 reads Thing._inner (pkg.util)" in proc.stdout


def test_a_package_missing_from_the_table_is_named_but_still_checked_for_circles(tmp_path):
    root = _tree(tmp_path, {"extra.py": ""})
    proc = _check(root)
    assert proc.returncode == 0      # a new module from another branch does not break CI by itself
    assert "unlisted: extra is in no layer of the README's table" in proc.stdout
    root = _tree(tmp_path, {"extra.py": "from pkg import other\n", "other.py": "import pkg.extra\n"})
    assert "circle: extra other" in _check(root).stdout


def test_a_known_upward_edge_is_allowed_but_a_new_circle_through_others_is_not(tmp_path):
    readme = README.replace("<!-- layers:end -->", "- `base -> engine`\n<!-- layers:end -->")
    root = _tree(tmp_path, {"base.py": "import pkg.engine.run\n"})
    (tmp_path / "README.md").write_text(readme)
    proc = _check(root)
    assert proc.returncode == 0, proc.stdout
    assert "known: base -> engine" in proc.stdout
    (root / "util.py").write_text("import pkg.other\n")
    (root / "other.py").write_text("import pkg.util\n")
    proc = _check(root)
    assert proc.returncode == 1 and "circle: other util" in proc.stdout
    (root / "base.py").write_text("")
    assert "stale: base -> engine is listed as known but gone" in _check(root).stdout
