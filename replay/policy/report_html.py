"""The policy-check report as one self-contained HTML page, in the style of the shadow
report (`replay.batch.report_html`, whose template environment and stylesheet it shares):
no JavaScript, so it can be mailed, attached to a ticket or opened from disk years later."""

from __future__ import annotations

from pathlib import Path

from replay.batch.report_html import environment
from replay.policy.report import PolicyReport

TEMPLATE = "policy_check_report.html"
_environment = environment()


def render_report(report: PolicyReport) -> str:
    return _environment.get_template(TEMPLATE).render(report=report)


def write_report(report: PolicyReport, path: Path) -> Path:
    path.write_text(render_report(report), encoding="utf-8")
    return path
