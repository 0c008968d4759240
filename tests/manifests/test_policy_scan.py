"""A Kubernetes policy scan (checkov) of what each overlay renders: no failure beyond the listed, explained skips."""

import json
import subprocess
from collections import defaultdict

import pytest
import yaml

from manifests.rendering import REPO, VENV

SKIPS_FILE = REPO / "scripts" / "checkov-skips.yaml"


def load_skips() -> dict[str, str]:
    """Skipped check id -> reason, from scripts/checkov-skips.yaml."""
    return {skip["id"]: skip["reason"] for skip in yaml.safe_load(SKIPS_FILE.read_text())["skips"]}


def test_every_skip_has_a_reason():
    skips = yaml.safe_load(SKIPS_FILE.read_text())["skips"]
    assert len({s["id"] for s in skips}) == len(skips), "a check is listed twice"
    assert all(len(s["reason"].split()) >= 8 for s in skips), "each skip says why, in a sentence"


@pytest.fixture(scope="session")
def checkov_results(overlay_renderings, tmp_path_factory) -> dict:
    """One checkov run (kubernetes framework) over the rendered overlays; its JSON results."""
    checkov = VENV / "checkov" / "bin" / "checkov"
    if not checkov.exists():
        pytest.fail(f"{checkov} is missing: run `make {VENV.name}/checkov/.installed`")
    folder = tmp_path_factory.mktemp("rendered")
    files = []
    for name, objects in overlay_renderings.items():
        path = folder / f"{name.removeprefix('overlays/')}.yaml"
        path.write_text(yaml.safe_dump_all(objects))
        files += ["--file", path.name]
    result = subprocess.run(
        # --skip-download: no call to the vendor's API; the checks ship with checkov.
        [str(checkov), "--framework", "kubernetes", *files, "--output", "json", "--skip-download"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode in (0, 1), f"checkov failed to run:\n{result.stderr[-3000:]}"
    return json.loads(result.stdout)


@pytest.mark.slow
def test_checkov_finds_nothing_beyond_the_listed_skips(checkov_results, overlay_renderings):
    summary = checkov_results["summary"]
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 50, f"checkov ran too few checks to mean anything: {summary}"
    results = checkov_results["results"]
    scanned = {check["file_path"].lstrip("/") for check in results["passed_checks"] + results["failed_checks"]}
    assert scanned == {f"{name.removeprefix('overlays/')}.yaml" for name in overlay_renderings}
    failed = defaultdict(set)
    for check in results["failed_checks"]:
        failed[check["check_id"]].add(f"{check['file_path'].lstrip('/')}: {check['resource']} ({check['check_name']})")
    skips = load_skips()
    assert {check: sorted(where) for check, where in failed.items() if check not in skips} == {}
    stale = sorted(set(skips) - set(failed))
    assert stale == [], f"these checks pass now: remove them from {SKIPS_FILE.name}"
