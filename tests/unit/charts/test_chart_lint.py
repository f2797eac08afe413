"""`helm lint --strict` on the chart, with its defaults and with every ci/ scenario."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.charts.conftest import CHART_DIR, CI_VALUES, run_helm

# A cold cache builds helm first (about 3.5 minutes on 2 cores); the default per-test
# timeout would cut that build off in whichever test runs first.
pytestmark = [pytest.mark.unit, pytest.mark.timeout(1800)]


def test_helm_is_the_pinned_release(helm: Path) -> None:
    result = run_helm(helm, "version", "--short")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("v3.22.0"), result.stdout


def test_ci_scenarios_cover_the_main_configurations() -> None:
    names = {path.name for path in CI_VALUES}
    assert {
        "values-minimal.yaml",
        "values-all-features.yaml",
        "values-gateway-only.yaml",
        "values-pulumi-contract.yaml",
    } <= names


def test_lint_strict_passes_with_defaults(helm: Path) -> None:
    result = run_helm(helm, "lint", "--strict", str(CHART_DIR))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda path: path.stem)
def test_lint_strict_passes_with_ci_scenario(helm: Path, values_file: Path) -> None:
    result = run_helm(helm, "lint", "--strict", str(CHART_DIR), "--values", str(values_file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout


def test_kubernetes_older_than_strimzi_supports_is_refused(helm: Path) -> None:
    # Chart.yaml's kubeVersion mirrors Strimzi 1.2's floor (1.30).
    result = run_helm(helm, "template", "x", str(CHART_DIR), "--kube-version", "1.29.0")
    assert result.returncode != 0
    assert "kubeVersion" in result.stderr


def test_chart_version_is_separate_from_app_version() -> None:
    import yaml

    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["version"] == "0.1.0"
    assert chart["appVersion"] == "0.1.0"
