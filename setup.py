"""Build hook: a wheel carries runbooks/, templates/ and service/ as ragops/_shipped/<name>/.

A non-editable install has no repository around it; ragops.resources.shipped_dir() finds these copies.
Everything else about the package is in pyproject.toml.
"""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED = ("runbooks", "templates", "service")   # the same names as ragops.resources.SHIPPED
ROOT = Path(__file__).resolve().parent


class BuildPyWithShipped(build_py):
    def run(self) -> None:
        editable = getattr(self, "editable_mode", False)   # an editable install reads the checkout's own folders
        if not editable:   # build/ is reused between builds: drop modules and files removed since the last one
            shutil.rmtree(Path(self.build_lib) / "ragops", ignore_errors=True)
        super().run()
        if editable:
            return
        target = Path(self.build_lib) / "ragops" / "_shipped"
        for name in SHIPPED:
            if not (ROOT / name).is_dir():
                raise SystemExit(f"cannot build ragops: {ROOT / name} is missing")
            shutil.copytree(ROOT / name, target / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".ragops", ".pytest_cache"))


setup(cmdclass={"build_py": BuildPyWithShipped})
