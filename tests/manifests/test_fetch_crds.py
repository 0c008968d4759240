"""scripts/fetch-crds.sh fetches the same pinned files that the tests validate against, and refuses others."""

import hashlib
import os
import re
import stat
import subprocess

import pytest

from manifests.rendering import REPO
from manifests.strict_schema import CRD_FILES, crds_dir

SCRIPT = REPO / "scripts" / "fetch-crds.sh"
# Stands in for curl, which cannot reach GitHub here: it "downloads" a URL by copying the file
# of the same name from $FAKE_ORIGIN, so the script's checksum and install steps run for real.
FAKE_CURL = """#!/usr/bin/env bash
set -euo pipefail
while [[ $# -gt 0 ]]; do
  case "$1" in
    --output) out="$2"; shift 2 ;;
    --retry) shift 2 ;;
    -*) shift ;;
    *) url="$1"; shift ;;
  esac
done
cp "$FAKE_ORIGIN/${url##*/}" "$out"
"""


def dry_run(*args: str) -> str:
    result = subprocess.run([str(SCRIPT), "--dry-run", *args], capture_output=True, text=True, check=True, cwd=REPO)
    return result.stdout


def test_help_says_what_it_does():
    result = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True, check=True)
    assert "Usage: scripts/fetch-crds.sh" in result.stdout and "--dry-run" in result.stdout


def test_unknown_options_are_refused():
    result = subprocess.run([str(SCRIPT), "--bogus"], capture_output=True, text=True)
    assert result.returncode == 2 and "unknown option --bogus" in result.stderr


def test_dry_run_prints_pinned_downloads_into_the_destination(tmp_path):
    output = dry_run(str(tmp_path))
    assert (
        "raw.githubusercontent.com/kubeflow/trainer/v1.9.4/manifests/base/crds/kubeflow.org_pytorchjobs.yaml" in output
    )
    assert (
        "raw.githubusercontent.com/SeldonIO/seldon-core/v1.17.1/operator/config/crd_v1/bases/"
        "machinelearning.seldon.io_seldondeployments.yaml" in output
    )
    assert not any(tmp_path.iterdir()), "--dry-run must not touch the destination"


def test_pinned_checksums_are_those_of_the_crds_the_tests_use(require_crds):
    pinned = dict(re.findall(r"'([0-9a-f]{64})  \S+/(\S+)\.part'", dry_run()))
    actual = {hashlib.sha256((crds_dir() / name).read_bytes()).hexdigest(): name for name in CRD_FILES.values()}
    assert pinned == actual


@pytest.fixture
def fake_curl(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    curl = bin_dir / "curl"
    curl.write_text(FAKE_CURL)
    curl.chmod(curl.stat().st_mode | stat.S_IEXEC)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def test_downloads_are_verified_and_installed(tmp_path, fake_curl, require_crds):
    dest = tmp_path / "crds"
    env = {**fake_curl, "FAKE_ORIGIN": str(crds_dir())}
    subprocess.run([str(SCRIPT), str(dest)], check=True, env=env, capture_output=True, text=True)
    assert sorted(p.name for p in dest.iterdir()) == sorted(CRD_FILES.values())
    for name in CRD_FILES.values():
        assert (dest / name).read_bytes() == (crds_dir() / name).read_bytes()


def test_a_file_with_another_checksum_is_refused(tmp_path, fake_curl, require_crds):
    origin = tmp_path / "origin"
    origin.mkdir()
    for name in CRD_FILES.values():
        (origin / name).write_bytes((crds_dir() / name).read_bytes() + b"# tampered\n")
    dest = tmp_path / "crds"
    result = subprocess.run(
        [str(SCRIPT), str(dest)], env={**fake_curl, "FAKE_ORIGIN": str(origin)}, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "does not have the pinned sha256" in result.stderr
    assert list(dest.iterdir()) == [], "nothing unverified is left behind"
