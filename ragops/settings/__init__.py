"""Every ragops.yaml section model below config.py: config.py loads and validates, engines read their
section from here and never import another engine to do it. Only foundation imports (pydantic, config_types)."""
