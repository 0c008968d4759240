"""The KServe image holds what its server imports: the core and the adapter, none of the Seldon modules."""

import glob
import shlex
import shutil
import subprocess

import pytest
from support.processes import REPO, venv_bin

pytestmark = pytest.mark.kserve

DOCKERFILE = REPO / "serving" / "kserve_predictor" / "Dockerfile"


def copied_sources() -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY of the repository's files into /app."""
    copies = []
    for line in DOCKERFILE.read_text().replace("\\\n", " ").splitlines():
        if not line.startswith("COPY "):
            continue
        words = shlex.split(line)
        if words[-1].startswith("/app"):
            copies.append((words[1:-1], words[-1]))
    return copies


def test_the_image_layout_imports_the_server_without_seldon(tmp_path):
    app = tmp_path / "app"
    for sources, destination in copied_sources():
        target = app / destination.removeprefix("/app").strip("/")
        target.mkdir(parents=True, exist_ok=True)
        for pattern in sources:
            matches = glob.glob(str(REPO / pattern))
            assert matches, f"{DOCKERFILE} copies {pattern}, which does not exist"
            for match in matches:
                shutil.copy(match, target)
    assert not (app / "MnistClassifier.py").exists()
    check = "import serve_mnist, sys; assert 'seldon_core' not in sys.modules and 'flask' not in sys.modules"
    result = subprocess.run(
        [venv_bin("kserve"), "-c", check],
        cwd=app,
        env={"PYTHONPATH": str(app), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
