"""The pinned upstream versions of the local cluster, read from `versions.env` beside this file."""

from __future__ import annotations

from pathlib import Path

VERSIONS_FILE = Path(__file__).with_name("versions.env")

Versions = dict[str, str]


def load_versions(path: Path = VERSIONS_FILE) -> Versions:
    """Parse KEY=VALUE lines; blank lines and `#` comments are skipped."""
    versions: Versions = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"{path}:{number}: expected KEY=VALUE, got {raw!r}")
        versions[key.strip()] = value.strip()
    return versions
