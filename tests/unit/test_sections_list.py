"""One list of sections (config.Sections' fields): ragops.yaml's top level and each environment follow it."""
from __future__ import annotations

from ragops.config import SECTIONS, Config, ConfigFile, ConfigFileHead, Environment, Sections


def test_the_top_level_and_each_environment_follow_the_one_list():
    assert tuple(Sections.model_fields) == SECTIONS
    assert list(ConfigFile.model_fields) == [*ConfigFileHead.model_fields, *SECTIONS]
    assert set(SECTIONS) <= set(Environment.model_fields)
    shortcuts = {name for name, value in vars(Config).items() if isinstance(value, property)} - {"state_dir"}
    assert shortcuts <= set(SECTIONS), shortcuts - set(SECTIONS)
