"""`ragops audit`: the production guide checked against the live environment, read-only.

facts.py observes, checks_*.py judge (one function per check, registered with model.check),
engine.py scores and applies waivers, render.py writes text/JSON/SARIF/JUnit/Markdown/HTML,
evidence.py writes an auditor's bundle.
"""
