"""Published model versions on the shared volume.

Layout under the model root (e.g. /mnt/pvc/models/mnist):

    <root>/<version>/model.pt        state_dict, loads with torch.load(weights_only=True)
    <root>/<version>/metadata.json   see `publish_model`
    <root>/LATEST                    the name of the newest complete version

A version directory is assembled under a hidden temporary name and renamed into
place when complete; LATEST is replaced atomically afterwards (`set_latest`). A
reader that follows LATEST therefore never sees a half-written version.

torch is imported only where a model is saved or loaded, so that a process that
only reads metadata or moves LATEST (a pipeline step) does not need it.
"""

import hashlib
import io
import json
import os
import re
import tempfile
import time
from pathlib import Path

LATEST = "LATEST"
MODEL_FILE = "model.pt"
METADATA_FILE = "metadata.json"
_VERSION_RE = re.compile(r"^v\d{8}T\d{6}Z-[0-9a-f]{6}$")


class ModelNotPublishedError(LookupError):
    """No complete model version exists under the model root yet."""


class ModelCorruptError(ValueError):
    """A published version fails verification (missing file, bad JSON, checksum mismatch)."""


def sha256_file(path: Path) -> str:
    """Return the hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def new_version_name() -> str:
    """A sortable, unique version name such as v20261122T101500Z-1a2b3c."""
    return time.strftime("v%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + os.urandom(3).hex()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def publish_model(model_root: str | os.PathLike, state_dict: dict, metadata: dict, promote: bool = True) -> str:
    """Publish a model version and, unless `promote` is False, point LATEST at it; return the version name.

    `metadata` holds what the trainer knows (architecture, input spec, class
    names, accuracy, ...); `version`, `created_at` and `sha256` are added here.
    """
    import torch

    root = Path(model_root)
    root.mkdir(parents=True, exist_ok=True)
    version = new_version_name()
    staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=root))
    try:
        model_path = staging / MODEL_FILE
        with open(model_path, "wb") as f:
            torch.save(state_dict, f)
            f.flush()
            os.fsync(f.fileno())
        full = {
            **metadata,
            "version": version,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "sha256": sha256_file(model_path),
        }
        _write_file(staging / METADATA_FILE, json.dumps(full, indent=2, sort_keys=True).encode())
        os.chmod(staging, 0o755)
        _fsync_dir(staging)
        os.rename(staging, root / version)
    except BaseException:
        for child in staging.glob("*"):
            child.unlink()
        staging.rmdir()
        raise
    _fsync_dir(root)
    if promote:
        set_latest(root, version)
    return version


def set_latest(model_root: str | os.PathLike, version: str) -> None:
    """Point LATEST at an already published version, atomically: a reader sees the old name or the new one.

    Raises ModelCorruptError if `version` is not a version name or has no metadata.json.
    """
    root = Path(model_root)
    if not _VERSION_RE.match(version):
        raise ModelCorruptError(f"{version!r} is not a version name (like v20261122T101500Z-1a2b3c)")
    if not (root / version / METADATA_FILE).is_file():
        raise ModelCorruptError(f"{root / version} is not a published version: it has no {METADATA_FILE}")
    # A unique temporary name: two processes (or threads) promoting at once never share one.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{LATEST}.", suffix=".tmp", dir=root)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write((version + "\n").encode())
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, root / LATEST)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(root)


def read_latest(model_root: str | os.PathLike) -> str:
    """Return the version named by LATEST; raise ModelNotPublishedError if there is none."""
    try:
        version = (Path(model_root) / LATEST).read_text().strip()
    except FileNotFoundError:
        raise ModelNotPublishedError(f"no model published yet: {Path(model_root) / LATEST} does not exist") from None
    if not _VERSION_RE.match(version):
        raise ModelCorruptError(f"{Path(model_root) / LATEST} names {version!r}, which is not a version name")
    return version


def read_metadata(model_root: str | os.PathLike, version: str) -> dict:
    """Return metadata.json of a version; raise ModelCorruptError if it is missing or unreadable."""
    path = Path(model_root) / version / METADATA_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelCorruptError(f"cannot read {path}: {exc}") from exc


def load_published(model_root: str | os.PathLike, version: str | None = None) -> tuple[dict, dict]:
    """Load (state_dict, metadata) of `version` (default: LATEST), verifying its sha256."""
    import torch

    version = version or read_latest(model_root)
    metadata = read_metadata(model_root, version)
    model_path = Path(model_root) / version / MODEL_FILE
    try:
        data = model_path.read_bytes()
    except OSError as exc:
        raise ModelCorruptError(f"cannot read {model_path}: {exc}") from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != metadata.get("sha256"):
        expected = metadata.get("sha256")
        raise ModelCorruptError(f"{model_path}: sha256 {actual} does not match metadata.json ({expected})")
    state_dict = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    return state_dict, metadata
