"""Drills: RTO/RPO measured and compared with slo, three report files, exit 3 on a missed target,
production refused without the flag."""
from __future__ import annotations

import json

import pytest

from ragops.config import load_config
from ragops.errors import UsageError
from ragops.runbook.engine import Engine


def setup(tmp_path, slo="{rto_seconds: 60, rpo_seconds: 300}", production=False, rpo_value=42):
    books = tmp_path / "books"
    books.mkdir(exist_ok=True)
    (books / "drill-demo.yaml").write_text(f"""
name: drill-demo
description: A demo drill that restores nothing.
steps:
  - id: prepare
    name: prepare
    action: shell
    with: {{command: "echo {rpo_value}"}}
  - id: restore
    name: restore
    action: sleep
    with: {{duration: 0.3s}}
  - id: verify
    name: verify
    action: assert
    with: {{that: "steps.prepare.outputs.stdout == '{rpo_value}'"}}
drill:
  rto: {{from: restore, to: verify}}
  rpo: "{{{{ int(steps.prepare.outputs.stdout) }}}}"
""")
    path = tmp_path / "ragops.yaml"
    path.write_text(f"""
project: drilltest
default_env: test
slo: {slo}
environments:
  test:
    state_dir: {tmp_path / 'state'}
    production: {'true' if production else 'false'}
    runbooks: {{dir: {books}}}
""")
    config = load_config(path)
    return config, Engine(config)


def test_drill_writes_three_reports_and_passes(tmp_path):
    from ragops.drill import run_drill

    config, engine = setup(tmp_path)
    report = run_drill(config, "demo", engine=engine, report_dir=tmp_path / "out")
    assert report["exit_code"] == 0 and report["verdict"] == "passed"
    assert 0.3 <= report["rto"]["seconds"] < 5 and report["rto"]["met"] is True
    assert report["rpo"] == {"seconds": 42.0, "target_seconds": 300.0, "met": True,
                             "note": "reported by step prepare (stdout)"}
    files = {p.name for p in (tmp_path / "out").iterdir()}
    assert files == {"report.json", "report.md", "report.html"}
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert data["drill"] == "drill-demo" and len(data["timeline"]) == 3
    html = (tmp_path / "out" / "report.html").read_text()
    assert "<svg" in html and html.count("<rect") == 3 and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "| RTO |" in (tmp_path / "out" / "report.md").read_text()


def test_missed_target_is_exit_3(tmp_path):
    from ragops.drill import run_drill

    config, engine = setup(tmp_path, slo="{rto_seconds: 0.1, rpo_seconds: 300}")
    report = run_drill(config, "drill-demo", engine=engine, report_dir=tmp_path / "out")
    assert report["exit_code"] == 3 and "RTO" in report["verdict"] and report["rto"]["met"] is False
    config, engine = setup(tmp_path, rpo_value=999)
    assert run_drill(config, "demo", engine=engine, report_dir=tmp_path / "out2")["rpo"]["met"] is False


def test_production_needs_the_flag(tmp_path):
    from ragops.drill import run_drill

    config, engine = setup(tmp_path, production=True)
    with pytest.raises(UsageError, match="production"):
        run_drill(config, "demo", engine=engine)
    assert run_drill(config, "demo", engine=engine, allow_production=True, report_dir=tmp_path / "o")["exit_code"] == 0


def test_cli_drill_run(tmp_path, capsys):
    from ragops.cli.main import main

    setup(tmp_path, slo="{rto_seconds: 0.1, rpo_seconds: 300}")
    cfg = str(tmp_path / "ragops.yaml")
    assert main(["-c", cfg, "-o", "json", "drill", "run", "demo", "--report", str(tmp_path / "r")]) == 3
    out = json.loads(capsys.readouterr().out)
    assert out["rto"]["met"] is False and (tmp_path / "r" / "report.html").exists()
    assert main(["-c", cfg, "drill", "run", "demo"]) == 3
    assert "RTO" in capsys.readouterr().out
    assert list((tmp_path / "state" / "drills").glob("*/report.md"))


def test_report_has_no_raw_template_a_detail_per_step_and_whole_timeline_labels(tmp_path):
    """Issue 13 item 17: the How cell said '{{ ... }}', Detail was empty, the last label was cut off."""
    import re

    from ragops.drill import run_drill, timeline_svg

    config, engine = setup(tmp_path)
    run_drill(config, "demo", engine=engine, report_dir=tmp_path / "out")
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    markdown = (tmp_path / "out" / "report.md").read_text()
    page = (tmp_path / "out" / "report.html").read_text()
    for text in (json.dumps(data), markdown, page):
        assert "{{" not in text and "steps.prepare.outputs" not in text
    assert data["steps"][0]["detail"] == "exit_code=0, stdout=42"
    assert "| prepare | shell | ok |" in markdown
    assert markdown.split("| prepare | shell | ok |")[1].split("\n")[0].strip(" |").endswith("stdout=42")
    assert "<td>exit_code=0, stdout=42</td>" in page
    svg = timeline_svg([{"step": "a", "status": "ok", "start": 0, "end": 1.0},
                        {"step": "b", "status": "ok", "start": 1.0, "end": 31560.0}], width=760)
    labels = re.findall(r'<text x="([0-9.]+)" y="[0-9.]+" text-anchor="(\w+)" fill="#666">([^<]+)</text>', svg)
    x, anchor, text = labels[-1]
    assert anchor == "end" and float(x) <= 760, "the last tick label must end inside the picture"
