"""The rules of the scanner gate without running a scanner: how findings meet the
exceptions file, and the tool recipes the scan tier builds on first use."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.security.scan import (
    EXCEPTIONS_FILE,
    ExceptionsFileError,
    Finding,
    classify,
    load_exceptions,
)

pytestmark = pytest.mark.unit

GATEWAY = "Deployment/starling/starling-services-gateway"


def _finding(
    check: str = "CKV_K8S_43", resource: str = GATEWAY, target: str = "stack:dev"
) -> Finding:
    return Finding("checkov", check, target, resource, "Image should use digest")


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exceptions.yaml"
    path.write_text(text)
    return path


ENTRY = """
  - scanner: checkov
    check: CKV_K8S_43
    resource: "Deployment/starling/*"
    targets: ["stack:dev"]
    reason: dev runs locally built images by tag
"""


def test_a_finding_not_listed_fails_and_a_listed_one_is_excepted(tmp_path: Path) -> None:
    waivers = load_exceptions(_file(tmp_path, "exceptions:" + ENTRY))
    listed, other_check, other_stack = (
        _finding(),
        _finding(check="CKV_K8S_15"),
        _finding(target="stack:prod"),
    )
    reports, stale = classify([listed, other_check, other_stack], waivers, ["stack:dev"])
    assert reports["stack:dev"].excepted == [listed]
    assert reports["stack:dev"].failing == [other_check]
    assert reports["stack:prod"].failing == [other_stack]
    assert stale == []


def test_an_exception_that_matches_nothing_is_stale(tmp_path: Path) -> None:
    waivers = load_exceptions(_file(tmp_path, "exceptions:" + ENTRY))
    _, stale = classify([_finding(resource="StatefulSet/starling/starling-valkey")], waivers, [])
    assert [w.check for w in stale] == ["CKV_K8S_43"]


def test_pending_entries_except_but_are_never_stale(tmp_path: Path) -> None:
    waivers = load_exceptions(_file(tmp_path, "pending:" + ENTRY))
    reports, stale = classify([_finding()], waivers, ["stack:dev"])
    assert reports["stack:dev"].pending == [_finding()] and not reports["stack:dev"].failing
    assert classify([], waivers, [])[1] == [] and stale == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("exceptions:\n  - {scanner: checkov, check: X, resource: '*'}\n", "lacks reason"),
        ("exceptions:\n  - {scanner: kubesec, check: X, resource: '*', reason: r}\n", "kubesec"),
        ("waivers: []\n", "unknown top-level key"),
    ],
)
def test_a_malformed_entry_is_named(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ExceptionsFileError, match=message):
        load_exceptions(_file(tmp_path, text))


def test_the_committed_exceptions_file_loads_with_a_reason_for_each_entry() -> None:
    waivers = load_exceptions(EXCEPTIONS_FILE)
    assert waivers, "the committed exceptions file is empty or unread"
    assert all(len(w.reason) >= 20 for w in waivers), "a reason says why, in a sentence"


def test_trivy_is_built_with_the_json_v2_experiment_it_imports() -> None:
    from starling.toolchain.build import _build_env, recipe_of
    from starling.toolchain.catalog import tool_named

    trivy = tool_named("trivy")
    assert trivy.version == "v0.74.0"
    assert recipe_of(trivy)["goexperiment"] == ["jsonv2"]
    assert _build_env(Path("/bin"), trivy)["GOEXPERIMENT"] == "jsonv2"
    # Tools built before the field existed keep their recipe, so their caches stay valid.
    assert "goexperiment" not in recipe_of(tool_named("helm"))


def test_checkov_lives_in_its_own_versioned_venv_not_the_project_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from starling.toolchain.pytools import CHECKOV, MANIFEST_NAME, cached_py_tool

    assert CHECKOV.requirement == "checkov==3.3.30"
    lock = (Path(__file__).resolve().parents[3] / "uv.lock").read_text()
    assert 'name = "checkov"' not in lock
    monkeypatch.setenv("STARLING_CACHE", str(tmp_path))
    home = tmp_path / "tools" / "checkov-3.3.30"
    script = home / "venv" / "bin" / "checkov"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    # No manifest: an interrupted install is not a cached one.
    assert cached_py_tool(CHECKOV) is None
    (home / MANIFEST_NAME).write_text(json.dumps({"recipe": {**CHECKOV.recipe(), "python": "3.9"}}))
    assert cached_py_tool(CHECKOV) is None
    (home / MANIFEST_NAME).write_text(json.dumps({"recipe": CHECKOV.recipe()}))
    assert cached_py_tool(CHECKOV) == script
