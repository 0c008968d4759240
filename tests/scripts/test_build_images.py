"""scripts/build-images.sh: the image names, Dockerfiles and engine commands it prints and runs."""

import subprocess

import pytest
from support.processes import REPO


def test_help(scripts):
    result = scripts.run("build-images.sh", "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("Usage: scripts/build-images.sh")
    assert result.calls == []


def test_dry_run_builds_every_image_from_the_repository_root(scripts):
    result = scripts.run("build-images.sh", "--registry", "ghcr.io/you/", "--tag", "0.2.0", "--dry-run")
    assert result.returncode == 0, result.stderr
    builds = [c for c in result.commands if " build " in c]
    assert [b.split(" --tag ")[1].split()[0] for b in builds] == [
        "ghcr.io/you/mnist-trainer:0.2.0-cpu",
        "ghcr.io/you/mnist-trainer:0.2.0-gpu",
        "ghcr.io/you/mnist-serving:0.2.0",
        "ghcr.io/you/mnist-frontend:0.2.0",
        "ghcr.io/you/mnist-kserve:0.2.0",
        "ghcr.io/you/mnist-pipelines:0.2.0",
        "ghcr.io/you/mnist-tensorboard:0.2.0",
    ]
    assert all(b.startswith("docker build --file ") and b.endswith(" .") for b in builds)
    assert "--file trainer/Dockerfile" in builds[0] and "--file trainer/Dockerfile" in builds[1]
    assert "--build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu" in builds[0]
    assert "--build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu130" in builds[1]
    assert "--file serving/Dockerfile" in builds[2]
    assert "--file frontend/Dockerfile" in builds[3]
    assert "--file serving/kserve_predictor/Dockerfile" in builds[4]
    assert "--file pipelines/Dockerfile" in builds[5]
    assert "--file tensorboard/Dockerfile" in builds[6]
    assert not any(" push " in c for c in result.commands)
    assert result.calls == []


def test_push_with_podman_and_a_platform(scripts):
    result = scripts.run(
        "build-images.sh", "--registry", "quay.io/me", "--tag", "t1", "--engine", "podman", "--trainer", "gpu",
        "--platform", "linux/amd64", "--push", "--dry-run",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.commands[0].startswith("podman build --file trainer/Dockerfile --tag quay.io/me/mnist-trainer:t1-gpu")
    assert all("--platform linux/amd64" in c for c in result.commands if " build " in c)
    assert [c for c in result.commands if " push " in c] == [
        "podman push quay.io/me/mnist-trainer:t1-gpu",
        "podman push quay.io/me/mnist-serving:t1",
        "podman push quay.io/me/mnist-frontend:t1",
        "podman push quay.io/me/mnist-kserve:t1",
        "podman push quay.io/me/mnist-pipelines:t1",
        "podman push quay.io/me/mnist-tensorboard:t1",
    ]


def test_kind_load_after_build(scripts):
    result = scripts.run("build-images.sh", "--trainer", "cpu", "--tag", "dev", "--kind-load", "mnist", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert [c for c in result.commands if c.startswith("kind ")] == [
        "kind load docker-image localhost/mnist-trainer:dev-cpu --name mnist",
        "kind load docker-image localhost/mnist-serving:dev --name mnist",
        "kind load docker-image localhost/mnist-frontend:dev --name mnist",
        "kind load docker-image localhost/mnist-kserve:dev --name mnist",
        "kind load docker-image localhost/mnist-pipelines:dev --name mnist",
        "kind load docker-image localhost/mnist-tensorboard:dev --name mnist",
    ]


def serving_tag(result) -> str:
    [build] = [c for c in result.commands if " build " in c and "serving/Dockerfile" in c]
    return build.split(" --tag localhost/mnist-serving:")[1].split()[0]


def test_tag_defaults_to_the_environment_then_the_git_commit_then_dev(scripts, tmp_path):
    assert serving_tag(scripts.run("build-images.sh", "--trainer", "cpu", "--dry-run", TAG="from-env")) == "from-env"
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert serving_tag(scripts.run("build-images.sh", "--trainer", "cpu", "--dry-run")) == commit
    # Outside a git checkout (here: git pointed at a directory that is not a repository) the tag is "dev".
    no_repository = scripts.run("build-images.sh", "--trainer", "cpu", "--dry-run", GIT_DIR=str(tmp_path))
    assert serving_tag(no_repository) == "dev"


def test_real_run_executes_exactly_what_it_prints(scripts):
    result = scripts.run("build-images.sh", "--registry", "r.example/x", "--tag", "9", "--push", "--kind-load", "k")
    assert result.returncode == 0, result.stderr
    assert result.calls == result.commands
    assert len(result.calls) == 7 + 7 + 7


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--trainer", "tpu"), "expected cpu, gpu or both"),
        (("--engine", "nerdctl"), "expected docker or podman"),
        (("--tag", "bad tag"), "is not a valid image tag"),
        (("--registry", "Upper/Case"), "expected lower-case"),
        (("--push",), "--push needs --registry"),
        (("--tag",), "--tag needs a value"),
        (("build",), "unknown argument 'build'"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(scripts, args, message):
    result = scripts.run("build-images.sh", *args, "--dry-run")
    assert result.returncode == 2
    assert message in result.stderr
    assert result.calls == []


# A kind whose `load docker-image` fails as it does with Docker's containerd image store, and a docker
# that reports its platform; both log their calls like the other stand-ins.
KIND_CONTAINERD_STORE = """#!/usr/bin/env bash
printf '%s\\n' "kind $*" >>"$SPY_LOG"
if [[ ${1:-} == load && ${2:-} == docker-image ]]; then
  echo 'ERROR: failed to load image: ctr: content digest sha256:0123: not found' >&2
  exit 1
fi
"""
DOCKER_ON_ARM = """#!/usr/bin/env bash
printf '%s\\n' "docker $*" >>"$SPY_LOG"
if [[ ${1:-} == version ]]; then echo linux/arm64; fi
"""


def test_a_failed_kind_load_falls_back_to_a_single_platform_archive(scripts):
    (scripts.bin / "kind").write_text(KIND_CONTAINERD_STORE)
    (scripts.bin / "docker").write_text(DOCKER_ON_ARM)
    result = scripts.run("build-images.sh", "--trainer", "cpu", "--tag", "dev", "--kind-load", "mnist")
    assert result.returncode == 0, result.stderr
    assert "loading a single-platform archive instead" in result.stdout
    loads = [call for call in result.calls if call.startswith(("kind", "docker image save", "rm"))]
    archive = loads[1].split("--output ")[1].split()[0]
    assert loads[:3] == [
        "kind load docker-image localhost/mnist-trainer:dev-cpu --name mnist",
        f"docker image save --platform linux/arm64 --output {archive} localhost/mnist-trainer:dev-cpu",
        f"kind load image-archive {archive} --name mnist",
    ]
    assert len([c for c in loads if c.startswith("kind load image-archive")]) == 6
    printed = [c for c in result.commands if c.startswith(("kind", "docker image save"))]
    assert printed == [c for c in loads if not c.startswith("rm")], "it runs what it prints"


def test_the_archive_is_saved_for_the_platform_that_was_built(scripts):
    (scripts.bin / "kind").write_text(KIND_CONTAINERD_STORE)
    result = scripts.run(
        "build-images.sh", "--trainer", "cpu", "--tag", "dev", "--platform", "linux/amd64", "--kind-load", "mnist"
    )
    assert result.returncode == 0, result.stderr
    assert any(c.startswith("docker image save --platform linux/amd64 --output ") for c in result.calls)
    assert not any(c.startswith("docker version") for c in result.calls)
