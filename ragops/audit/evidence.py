"""`ragops audit --evidence DIR`: a dated bundle an auditor can keep (SOC 2 A1.3: recovery plan
testing): the report in JSON, Markdown and HTML, the drill reports and backup verification records it
relied on, and MANIFEST.sha256 over every file of the bundle."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from ragops.audit import render
from ragops.errors import UsageError
from ragops.secrets import redact, redact_data


def write_bundle(root: Path, report: dict, drill_reports: list[dict], verifications: dict[str, dict]) -> Path:
    stamp = report["generated_at"].replace(":", "").replace("-", "")[:15]
    folder = root / f"audit-{report['environment']}-{stamp}"
    if folder.exists():
        raise UsageError(f"--evidence: {folder} already exists (one bundle per audit)")
    folder.mkdir(parents=True, mode=0o700)
    report = redact_data(report)
    (folder / "report.json").write_text(render.as_json(report))
    (folder / "report.md").write_text(redact(render.markdown(report)))
    (folder / "report.html").write_text(redact(render.html_report(report, drill_reports)))
    for index, drill in enumerate(drill_reports):
        source = Path(drill["_path"]).parent
        target = folder / "drills" / f"{index:02d}-{source.name}"
        target.mkdir(parents=True)
        for name in ("report.json", "report.md", "report.html"):
            if (source / name).is_file():
                shutil.copyfile(source / name, target / name)
    if verifications:
        (folder / "backups").mkdir()
        for backup_id, record in verifications.items():
            (folder / "backups" / f"{backup_id}.verification.json").write_text(
                json.dumps(redact_data(record), indent=2, default=str) + "\n")
    lines = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.relative_to(folder)}")
    (folder / "MANIFEST.sha256").write_text("\n".join(lines) + "\n")
    return folder
