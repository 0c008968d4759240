"""scripts/fetch-crds.sh fetches the same pinned files that the tests validate against, and refuses others."""

import hashlib
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from manifests.rendering import REPO
from manifests.strict_schema import CRD_FILES, crds_dir

SCRIPT = REPO / "scripts" / "fetch-crds.sh"
# Stands in for curl, which cannot reach GitHub here: it "downloads" a URL by copying the file that the
# script installs under that name (--output NAME.part) from $FAKE_ORIGIN, and logs the URL to $FAKE_CURL_LOG,
# so the script's checksum and install steps run for real.
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
echo "$url" >>"${FAKE_CURL_LOG:-/dev/null}"
name=${out##*/}
cp "$FAKE_ORIGIN/${name%.part}" "$out"
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


def pinned_files() -> dict[str, str]:
    """file name -> the sha256 that fetch-crds.sh pins for it."""
    return {name: digest for digest, name in re.findall(r"'([0-9a-f]{64})  \S+/(\S+)\.part'", dry_run())}


def test_every_crd_the_tests_use_is_pinned():
    assert set(CRD_FILES.values()) <= set(pinned_files())


def test_pinned_checksums_are_those_of_the_files_the_tests_use(require_crds):
    actual = {name: hashlib.sha256((crds_dir() / name).read_bytes()).hexdigest() for name in pinned_files()}
    assert pinned_files() == actual


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
    assert sorted(p.name for p in dest.iterdir()) == sorted(pinned_files())
    for name in pinned_files():
        assert (dest / name).read_bytes() == (crds_dir() / name).read_bytes()


def test_a_file_with_another_checksum_is_refused(tmp_path, fake_curl, require_crds):
    origin = tmp_path / "origin"
    origin.mkdir()
    for name in pinned_files():
        (origin / name).write_bytes((crds_dir() / name).read_bytes() + b"# tampered\n")
    dest = tmp_path / "crds"
    result = subprocess.run(
        [str(SCRIPT), str(dest)], env={**fake_curl, "FAKE_ORIGIN": str(origin)}, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "does not have the pinned sha256" in result.stderr
    assert list(dest.iterdir()) == [], "nothing unverified is left behind"


@pytest.fixture
def plain_clone(tmp_path, fake_curl):
    """The Makefile and fetch-crds.sh in a folder with no ../shared next to it, and the env to run make there."""
    clone = tmp_path / "clone"
    (clone / "scripts").mkdir(parents=True)
    (clone / "Makefile").write_bytes((REPO / "Makefile").read_bytes())
    (clone / "scripts" / "fetch-crds.sh").write_bytes(SCRIPT.read_bytes())
    (clone / "scripts" / "fetch-crds.sh").chmod(0o755)
    env = {k: v for k, v in fake_curl.items() if k not in ("CRDS_DIR", "MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    env["FAKE_CURL_LOG"] = str(tmp_path / "curl.log")
    return clone, env


def make(clone, env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-C", str(clone), *args], env=env, capture_output=True, text=True, timeout=120)


def test_make_fetches_the_pinned_crds_once_when_there_is_no_shared_folder(plain_clone, require_crds):
    clone, env = plain_clone
    env["FAKE_ORIGIN"] = str(crds_dir())
    first = make(clone, env, "crds-present")
    assert first.returncode == 0, first.stderr
    cached = clone / ".cache" / "crds"
    assert sorted(p.name for p in cached.iterdir() if p.name != ".complete") == sorted(pinned_files())
    assert len(Path(env["FAKE_CURL_LOG"]).read_text().splitlines()) == len(pinned_files())
    again = make(clone, env, "crds-present")
    assert again.returncode == 0, again.stderr
    assert len(Path(env["FAKE_CURL_LOG"]).read_text().splitlines()) == len(pinned_files()), "fetched twice"
    shown = make(clone, env, "--no-print-directory", "-s", "-p", "crds-present")
    assert f"CRDS_DIR := {cached}" in shown.stdout


def test_make_says_in_one_line_how_when_the_fetch_fails(plain_clone, tmp_path):
    clone, env = plain_clone
    env["FAKE_ORIGIN"] = str(tmp_path / "unreachable")
    result = make(clone, env, "crds-present")
    assert result.returncode != 0
    ours = [line for line in result.stderr.splitlines() if line.startswith("make: could not")]
    assert len(ours) == 1 and "scripts/fetch-crds.sh DIR" in ours[0] and "CRDS_DIR=DIR" in ours[0]


def test_make_refuses_a_crds_dir_that_does_not_exist(plain_clone, tmp_path):
    clone, env = plain_clone
    missing = tmp_path / "no-such-crds"
    result = make(clone, env, "crds-present", f"CRDS_DIR={missing}")
    assert result.returncode != 0
    assert f"make: CRDS_DIR={missing} does not exist: unset it" in result.stderr
    assert not (clone / ".cache").exists()
