"""Render everything we deploy, run checkov and trivy over it, and match the findings
against the checked-in exceptions file (security/scanner-exceptions.yaml).

Each target (a committed stack's program render, or one chart render) becomes a directory
of one-object YAML files; both scanners run once over the parent directory, and each
finding is traced back through its file to (target, Kind/namespace/name).
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
EXCEPTIONS_FILE = REPO_ROOT / "security" / "scanner-exceptions.yaml"
CHART_DIR = REPO_ROOT / "charts" / "starling-services"
STACKS = ("dev", "ci", "prod")
SCANNERS = ("checkov", "trivy")
SCAN_TIMEOUT_SECONDS = 900
# Helm releases the program installs from charts this machine cannot fetch (a registry
# and a chart repository outside the package registries): their values are checked by
# the unit tests, their rendered objects are not scanned (docs/security-scan.md).
UNFETCHABLE_RELEASES = ("strimzi-operator", "airflow-release")


@dataclass(frozen=True)
class Finding:
    scanner: str
    check: str
    target: str  # "stack:dev", "chart:default", "chart:ci/values-minimal.yaml"
    resource: str  # Kind/namespace/name
    title: str


@dataclass(frozen=True)
class Waiver:
    scanner: str
    check: str
    resource: str  # Kind/namespace/name, fnmatch glob
    reason: str
    pending: bool
    targets: tuple[str, ...] = ()  # globs; empty = every target

    def matches(self, finding: Finding) -> bool:
        return (
            self.scanner == finding.scanner
            and self.check == finding.check
            and fnmatch.fnmatchcase(finding.resource, self.resource)
            and (
                not self.targets
                or any(fnmatch.fnmatchcase(finding.target, t) for t in self.targets)
            )
        )

    def describe(self) -> str:
        where = f" in {', '.join(self.targets)}" if self.targets else ""
        return f"{self.scanner} {self.check} {self.resource}{where}"


class ExceptionsFileError(ValueError):
    """The exceptions file is malformed; the message names the entry and the key."""


def load_exceptions(path: Path = EXCEPTIONS_FILE) -> list[Waiver]:
    document = yaml.safe_load(path.read_text()) or {}
    unknown = set(document) - {"exceptions", "pending"}
    if unknown:
        raise ExceptionsFileError(
            f"{path}: unknown top-level key(s) {sorted(unknown)}; only `exceptions` and "
            "`pending` are read"
        )
    loaded: list[Waiver] = []
    for section in ("exceptions", "pending"):
        for index, entry in enumerate(document.get(section) or []):
            where = f"{path.name}: {section}[{index}]"
            missing = [k for k in ("scanner", "check", "resource", "reason") if not entry.get(k)]
            if missing:
                raise ExceptionsFileError(
                    f"{where} lacks {', '.join(missing)}: every entry names the scanner, "
                    "the check id, the resource (Kind/namespace/name or a glob) and a reason"
                )
            if entry["scanner"] not in SCANNERS:
                raise ExceptionsFileError(
                    f"{where}: scanner {entry['scanner']!r} is not one of {', '.join(SCANNERS)}"
                )
            if "\n" in str(entry["reason"]).strip():
                raise ExceptionsFileError(f"{where}: the reason must be one line")
            targets = entry.get("targets") or ()
            loaded.append(
                Waiver(
                    scanner=entry["scanner"],
                    check=str(entry["check"]),
                    resource=str(entry["resource"]),
                    reason=str(entry["reason"]).strip(),
                    pending=section == "pending",
                    targets=tuple(str(t) for t in targets),
                )
            )
    return loaded


@dataclass
class TargetReport:
    target: str
    findings: list[Finding] = field(default_factory=list)
    excepted: list[Finding] = field(default_factory=list)
    pending: list[Finding] = field(default_factory=list)
    failing: list[Finding] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"{self.target:<42} findings {len(self.findings):>3}  excepted "
            f"{len(self.excepted):>3}  pending {len(self.pending):>3}  "
            f"failing {len(self.failing):>3}"
        )


def classify(
    findings: Sequence[Finding], exceptions: Sequence[Waiver], targets: Iterable[str]
) -> tuple[dict[str, TargetReport], list[Waiver]]:
    """Per-target counts, and the (non-pending) exceptions that matched nothing: stale."""
    reports = {target: TargetReport(target) for target in targets}
    used: set[Waiver] = set()
    for finding in findings:
        report = reports.setdefault(finding.target, TargetReport(finding.target))
        report.findings.append(finding)
        match = next((e for e in exceptions if e.matches(finding)), None)
        if match is None:
            report.failing.append(finding)
            continue
        used.add(match)
        (report.pending if match.pending else report.excepted).append(finding)
    stale = [e for e in exceptions if not e.pending and e not in used]
    return reports, stale


def resolved_pending(findings: Sequence[Finding], exceptions: Sequence[Waiver]) -> list[Waiver]:
    """Pending entries no finding needs any more: their fix landed; delete them."""
    return [e for e in exceptions if e.pending and not any(e.matches(f) for f in findings)]


# --- rendering -------------------------------------------------------------------------


def resource_id(manifest: dict[str, Any], default_namespace: str) -> str:
    metadata = manifest.get("metadata") or {}
    namespace = metadata.get("namespace") or default_namespace or "-"
    return f"{manifest.get('kind')}/{namespace}/{metadata.get('name')}"


def write_target(
    root: Path, target: str, manifests: Sequence[dict[str, Any]], namespace: str
) -> dict[str, tuple[str, str]]:
    """One file per object under root/<target slug>/; returns file name -> (target, id)."""
    directory = root / target.replace(":", "-").replace("/", "-")
    directory.mkdir(parents=True)
    index: dict[str, tuple[str, str]] = {}
    for number, original in enumerate(manifests):
        # The namespace a release or stack puts it in, so the scanners' ids name it too.
        manifest = dict(original)
        metadata = dict(manifest.get("metadata") or {})
        if namespace and manifest.get("kind") != "Namespace":
            metadata.setdefault("namespace", namespace)
        manifest["metadata"] = metadata
        name = f"{directory.name}--{number:03d}-{manifest.get('kind')}.yaml"
        (directory / name).write_text(yaml.safe_dump(manifest, sort_keys=False))
        index[name] = (target, resource_id(manifest, namespace))
    return index


def helm_template(
    helm: Path,
    release: str,
    namespace: str,
    values_files: Sequence[Path] = (),
    values: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    args = [str(helm), "template", release, str(CHART_DIR), "--namespace", namespace]
    with tempfile.TemporaryDirectory() as scratch:
        if values is not None:
            inline = Path(scratch) / "values.json"
            inline.write_text(json.dumps(values))
            values_files = [*values_files, inline]
        for path in values_files:
            args += ["--values", str(path)]
        result = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


# --- scanners --------------------------------------------------------------------------


def offline_prefix() -> list[str]:
    """`unshare --net` where we may (root): the scan then provably uses no network."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return []
    probe = subprocess.run([unshare, "--net", "true"], capture_output=True, check=False)
    return [unshare, "--net"] if probe.returncode == 0 else []


@dataclass
class ScanRun:
    findings: list[Finding]
    seconds: float
    command: list[str]


def _scanner_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BC_", "PRISMA_"))}
    env["HOME"] = str(home)  # keeps the scanners' caches out of the real home
    env["CHECKOV_RUN_SCA_PACKAGE_SCAN_V2"] = "false"
    return env


def run_checkov(
    checkov: Path, root: Path, index: dict[str, tuple[str, str]], offline: list[str]
) -> ScanRun:
    command = [
        *offline,
        str(checkov),
        "--directory",
        str(root),
        "--framework",
        "kubernetes",
        "--skip-download",
        "--output",
        "json",
        "--compact",
        "--quiet",
    ]
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as home:
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=SCAN_TIMEOUT_SECONDS,
            env=_scanner_env(Path(home)),
            check=False,
            cwd=root,
        )
    seconds = time.monotonic() - started
    # checkov exits 1 when a check failed; anything else, or no JSON, is a broken run.
    if result.returncode not in (0, 1):
        raise AssertionError(
            f"checkov exited {result.returncode}:\n{result.stderr[-3000:]}{result.stdout[-2000:]}"
        )
    document = json.loads(result.stdout) if result.stdout.strip() else {}
    reports = document if isinstance(document, list) else [document]
    findings: list[Finding] = []
    for report in reports:
        for failed in (report.get("results") or {}).get("failed_checks") or []:
            target, resource = index[Path(failed["file_path"]).name]
            findings.append(
                Finding("checkov", failed["check_id"], target, resource, failed["check_name"])
            )
    return ScanRun(findings, seconds, command)


def run_trivy(
    trivy: Path, root: Path, index: dict[str, tuple[str, str]], offline: list[str]
) -> ScanRun:
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as home:
        command = [
            *offline,
            str(trivy),
            "config",
            "--quiet",
            "--format",
            "json",
            "--cache-dir",
            str(Path(home) / "cache"),
            # The checks compiled into the binary; never the online bundle.
            "--skip-check-update",
            "--misconfig-scanners",
            "kubernetes",
            str(root),
        ]
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=SCAN_TIMEOUT_SECONDS,
            env=_scanner_env(Path(home)),
            check=False,
        )
    seconds = time.monotonic() - started
    if result.returncode != 0:
        raise AssertionError(f"trivy exited {result.returncode}:\n{result.stderr[-3000:]}")
    document = json.loads(result.stdout)
    findings: list[Finding] = []
    for report in document.get("Results") or []:
        name = Path(report["Target"]).name
        for item in report.get("Misconfigurations") or []:
            if item.get("Status", "FAIL") != "FAIL":
                continue
            target, resource = index[name]
            findings.append(Finding("trivy", item["ID"], target, resource, item["Title"]))
    return ScanRun(findings, seconds, command)


HELM_FRAMEWORK_TARGET = "chart:checkov-helm"


def run_checkov_helm(checkov: Path, helm: Path, offline: list[str]) -> ScanRun:
    """checkov's own helm runner over the chart (it renders the defaults itself, with no
    namespace and release `release-name`): a second opinion on how the chart is read."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as home:
        # A copy, so checkov's scratch files never land in the repository.
        chart = Path(home) / "chart" / CHART_DIR.name
        shutil.copytree(CHART_DIR, chart)
        env = _scanner_env(Path(home))
        env["PATH"] = f"{helm.parent}{os.pathsep}{env.get('PATH', '')}"
        command = [
            *offline,
            str(checkov),
            "--directory",
            str(chart),
            "--framework",
            "helm",
            "--skip-download",
            "--output",
            "json",
            "--compact",
            "--quiet",
        ]
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=SCAN_TIMEOUT_SECONDS,
            env=env,
            check=False,
        )
    seconds = time.monotonic() - started
    if result.returncode not in (0, 1) or not result.stdout.strip():
        raise AssertionError(
            f"checkov --framework helm exited {result.returncode}:\n{result.stderr[-3000:]}"
        )
    document = json.loads(result.stdout)
    reports = document if isinstance(document, list) else [document]
    findings: list[Finding] = []
    for report in reports:
        summary = report.get("summary") or {}
        if summary.get("parsing_errors"):
            raise AssertionError(f"checkov's helm runner could not parse the chart: {summary}")
        for failed in (report.get("results") or {}).get("failed_checks") or []:
            kind, namespace, name = failed["resource"].split(".", 2)
            findings.append(
                Finding(
                    "checkov",
                    failed["check_id"],
                    HELM_FRAMEWORK_TARGET,
                    f"{kind}/{namespace}/{name}",
                    failed["check_name"],
                )
            )
    return ScanRun(findings, seconds, command)
