"""checkov and trivy over everything we deploy: each committed stack's program render
(its own objects plus our chart as the program installs it) and the chart's default and
ci renders. Any finding not in security/scanner-exceptions.yaml fails, and so does an
exception that no longer matches anything (docs/security-scan.md)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.unit.security.scan import (
    CHART_DIR,
    HELM_FRAMEWORK_TARGET,
    STACKS,
    UNFETCHABLE_RELEASES,
    Finding,
    TargetReport,
    classify,
    helm_template,
    load_exceptions,
    offline_prefix,
    resolved_pending,
    run_checkov,
    run_checkov_helm,
    run_trivy,
    write_target,
)

pytestmark = [pytest.mark.scan, pytest.mark.slow, pytest.mark.timeout(3600)]

CHART_TARGETS = (
    "chart:default",
    *(f"chart:ci/{p.name}" for p in sorted((CHART_DIR / "ci").glob("values-*.yaml"))),
)
TARGETS = (*(f"stack:{s}" for s in STACKS), *CHART_TARGETS, HELM_FRAMEWORK_TARGET)


@dataclass
class ScanResults:
    reports: dict[str, TargetReport]
    stale: list[Any]
    summary: list[str]


def _stack_manifests(stack: str, helm: Path) -> tuple[list[dict[str, Any]], list[str]]:
    from tests.unit.infra.harness import run_program

    run = run_program(stack)
    manifests = [r.manifest() for r in run.kubernetes_objects()]
    notes: list[str] = []
    for release in run.of_type("kubernetes:helm.sh/v3:Release"):
        if release.name in UNFETCHABLE_RELEASES:
            notes.append(f"{release.name} ({release.inputs['chart']}): chart not available offline")
            continue
        manifests += helm_template(
            helm,
            release.inputs["name"],
            release.inputs["namespace"],
            values=release.inputs.get("values") or {},
        )
    return manifests, notes


@pytest.fixture(scope="session")
def scan_results(
    go_tool: Callable[[str], Path],
    tool_progress: Callable[[str], None],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ScanResults]:
    from starling.toolchain.pytools import CHECKOV, ensure_py_tool

    helm = go_tool("helm")
    trivy = go_tool("trivy")
    checkov = ensure_py_tool(CHECKOV, progress=tool_progress)
    root = tmp_path_factory.mktemp("rendered")
    index: dict[str, tuple[str, str]] = {}
    notes: list[str] = []
    for stack in STACKS:
        manifests, stack_notes = _stack_manifests(stack, helm)
        notes += [f"stack:{stack}: {note}" for note in stack_notes]
        index |= write_target(root, f"stack:{stack}", manifests, "")
    index |= write_target(
        root, "chart:default", helm_template(helm, "starling", "starling"), "starling"
    )
    for values in sorted((CHART_DIR / "ci").glob("values-*.yaml")):
        rendered = helm_template(helm, "starling", "starling", values_files=[values])
        index |= write_target(root, f"chart:ci/{values.name}", rendered, "starling")

    offline = offline_prefix()
    runs = [
        run_checkov(checkov, root, index, offline),
        run_checkov_helm(checkov, helm, offline),
        run_trivy(trivy, root, index, offline),
    ]
    findings: list[Finding] = [f for run in runs for f in run.findings]
    waivers = load_exceptions()
    reports, stale = classify(findings, waivers, TARGETS)
    summary = [
        f"scanned {len(index)} objects in {len(TARGETS)} renders"
        + (
            " with no network (unshare --net)" if offline else " (network not isolated: no unshare)"
        ),
        *(f"{_label(run.command[len(offline) :])}: {run.seconds:.1f} s" for run in runs),
        *notes,
        *(report.line() for report in reports.values()),
    ]
    for report in reports.values():
        for finding in report.pending:
            summary.append(
                f"PENDING (a fix is in flight; remove from `pending:` when it lands): "
                f"{finding.target} {finding.scanner} {finding.check} {finding.resource}"
            )
    for waiver in resolved_pending(findings, waivers):
        summary.append(f"PENDING entry resolved (delete it): {waiver.describe()}")
    tool_progress("\n".join(["", "[scan] " + summary[0], *("[scan] " + s for s in summary[1:])]))
    yield ScanResults(reports, stale, summary)


def _label(command: list[str]) -> str:
    framework = command[command.index("--framework") + 1] if "--framework" in command else ""
    return " ".join([Path(command[0]).name, command[1] if framework == "" else framework])


def _explain(findings: list[Finding]) -> str:
    return "\n".join(
        f"  {f.scanner} {f.check} {f.resource}: {f.title}" for f in sorted(findings, key=str)
    )


@pytest.mark.parametrize("target", TARGETS)
def test_no_finding_outside_the_exceptions_file(scan_results: ScanResults, target: str) -> None:
    report = scan_results.reports[target]
    assert not report.failing, (
        f"{target}: {len(report.failing)} scanner finding(s) not listed in "
        f"security/scanner-exceptions.yaml; fix them, or add an entry with a one-line reason:\n"
        + _explain(report.failing)
    )


def test_every_exception_still_matches_a_finding(scan_results: ScanResults) -> None:
    assert not scan_results.stale, (
        "security/scanner-exceptions.yaml lists exceptions that match no finding any more; "
        "remove them so the file stays true:\n"
        + "\n".join(f"  {e.describe()} ({e.reason})" for e in scan_results.stale)
    )


def test_both_scanners_found_something_to_judge(scan_results: ScanResults) -> None:
    # A scanner that silently parsed nothing would pass every test above.
    seen = {f.scanner for r in scan_results.reports.values() for f in r.findings}
    assert seen == {"checkov", "trivy"}, f"only {sorted(seen)} reported findings"
    print("\n".join(scan_results.summary), file=sys.stderr)
