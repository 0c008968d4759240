"""The local runner's pure parts: quantities, $(VAR) expansion, paths, hosts, ports, Dockerfiles, operator env."""

from pathlib import Path

import pytest

from local_cluster.node.component_settings import check_settings
from local_cluster.node.components import (
    COMPONENTS,
    ImageDefaults,
    component_for_image,
    container_argv,
    parse_dockerfile,
)
from local_cluster.node.errors import RefusedError
from local_cluster.node.podspec import paired_port, parse_quantity, resource_value
from local_cluster.node.translate import HostMap, Mount, PathMap, expand, translate_args, translate_word

WORKLOAD = "Kind/name"
TRAINER = next(c for c in COMPONENTS if c.name == "trainer")
FRONTEND = next(c for c in COMPONENTS if c.name == "frontend")


@pytest.mark.parametrize(
    ("text", "value"),
    [("2", 2), ("500m", 0.5), ("1Gi", 2**30), ("256Mi", 2**28), ("1k", 1000), ("1e3", 1000), (3, 3)],
)
def test_parse_quantity(text, value):
    assert parse_quantity(text) == value


def test_parse_quantity_refuses_garbage():
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        parse_quantity("two")


@pytest.mark.parametrize(
    ("resources", "ref", "expected"),
    [
        ({"limits": {"cpu": "2"}}, {"resource": "limits.cpu"}, "2"),
        ({"limits": {"cpu": "500m"}}, {"resource": "limits.cpu"}, "1"),
        ({"limits": {"cpu": "500m"}}, {"resource": "limits.cpu", "divisor": "1m"}, "500"),
        ({"requests": {"cpu": "1"}, "limits": {"cpu": "2"}}, {"resource": "requests.cpu"}, "1"),
        ({"limits": {"memory": "1Gi"}}, {"resource": "limits.memory", "divisor": "1Mi"}, "1024"),
    ],
)
def test_resource_field_ref(resources, ref, expected):
    assert resource_value({"resources": resources}, ref, WORKLOAD) == expected


def test_resource_field_ref_refuses_other_resources():
    with pytest.raises(RefusedError, match=r"limits\.ephemeral-storage is not emulated"):
        resource_value({}, {"resource": "limits.ephemeral-storage"}, WORKLOAD)


def test_expand_follows_kubernetes():
    env = {"A": "1", "DIR": "/mnt/pvc"}
    assert expand("$(DIR)/data-$(A)", env) == "/mnt/pvc/data-1"
    assert expand("$(UNKNOWN) and $$(A)", env) == "$(UNKNOWN) and $(A)"


@pytest.fixture
def paths(tmp_path):
    mounts = [Mount("/mnt/pvc", tmp_path / "pvc", "data"), Mount("/tmp", tmp_path / "tmp", "tmp")]
    return PathMap(mounts, "/app", Path("/repo/trainer"))


def test_paths_under_mounts_workdir_and_system(paths, tmp_path):
    assert paths.translate("/mnt/pvc/models/mnist", "arg", WORKLOAD) == f"{tmp_path}/pvc/models/mnist"
    assert paths.translate("/mnt/pvc", "arg", WORKLOAD) == f"{tmp_path}/pvc"
    assert paths.translate("/tmp/x", "arg", WORKLOAD) == f"{tmp_path}/tmp/x"
    assert paths.translate("/app/train.py", "arg", WORKLOAD) == "/repo/trainer/train.py"
    assert paths.translate("/dev/null", "arg", WORKLOAD) == "/dev/null"


def test_a_path_under_no_mount_is_refused_with_the_workload_and_the_mounts(paths):
    with pytest.raises(RefusedError) as info:
        paths.translate("/mnt/pcv/models", "arg --model-root", "PyTorchJob/mnist-ddp Master")
    message = str(info.value)
    assert message.startswith(
        "PyTorchJob/mnist-ddp Master: arg --model-root /mnt/pcv/models is not under any volume mount"
    )
    assert "/mnt/pvc, /tmp" in message


def test_a_prefix_is_matched_on_whole_path_components(paths):
    with pytest.raises(RefusedError):
        paths.translate("/mnt/pvcx/data", "arg", WORKLOAD)


@pytest.fixture
def hosts():
    hosts = HostMap("team")
    hosts.add("mnist-classifier-default", {8000: 9100})
    hosts.add("mnist-frontend", {80: 8181})
    return hosts


@pytest.mark.parametrize(
    "host",
    [
        "mnist-classifier-default",
        "mnist-classifier-default.team",
        "mnist-classifier-default.team.svc",
        "mnist-classifier-default.team.svc.cluster.local",
    ],
)
def test_service_urls_map_to_local_ports(hosts, host):
    url = f"http://{host}:8000/api/v1.0/predictions"
    assert hosts.translate_text(url, "env X", WORKLOAD) == "http://127.0.0.1:9100/api/v1.0/predictions"


def test_default_http_port_and_host_port_values(hosts):
    assert hosts.translate_text("http://mnist-frontend/", "env X", WORKLOAD) == "http://127.0.0.1:8181/"
    assert hosts.translate_text("mnist-frontend:80", "env X", WORKLOAD) == "127.0.0.1:8181"
    assert hosts.translate_text("mnist-frontend", "env X", WORKLOAD, bare_host=True) == "127.0.0.1"
    assert hosts.translate_text("mnist-frontend", "env APP_NAME", WORKLOAD) == "mnist-frontend"


def test_outside_hosts_are_left_alone(hosts):
    for value in ("https://pypi.org/simple", "http://127.0.0.1:5000/x", "plain words"):
        assert hosts.translate_text(value, "env X", WORKLOAD) == value


def test_an_unknown_cluster_host_or_port_is_refused(hosts):
    with pytest.raises(RefusedError, match="names no Service"):
        hosts.translate_text("http://mnist-clasifier-default:8000/api", "env URL", "Deployment/d")
    with pytest.raises(RefusedError, match="has no port 9000"):
        hosts.translate_text("http://mnist-classifier-default:9000/api", "env URL", "Deployment/d")


def test_words_paths_flags_and_path_lists(paths, hosts, tmp_path):
    assert (
        translate_word("--data-dir=/mnt/pvc/data", paths, hosts, "arg", WORKLOAD) == f"--data-dir={tmp_path}/pvc/data"
    )
    assert translate_word("/mnt/pvc/a:/tmp/b", paths, hosts, "env P", WORKLOAD) == f"{tmp_path}/pvc/a:{tmp_path}/tmp/b"
    assert translate_word("gloo", paths, hosts, "arg", WORKLOAD) == "gloo"
    assert translate_word("--master-addr=mnist-frontend", paths, hosts, "arg", WORKLOAD) == "--master-addr=127.0.0.1"
    script = "ls /mnt/pvc/models && curl http://mnist-frontend:80/"
    assert (
        translate_word(script, paths, hosts, "arg", WORKLOAD)
        == f"ls {tmp_path}/pvc/models && curl http://127.0.0.1:8181/"
    )


def test_container_ports_in_bind_and_port_flags(paths, hosts):
    ports = {8080: 18080}
    argv = ["--bind", "0.0.0.0:8080", "--port", "8080", "--metrics-port=8080", "-b=:8080", "--workers", "8080"]
    assert translate_args(argv, paths, hosts, ports, WORKLOAD) == [
        "--bind",
        "127.0.0.1:18080",
        "--port",
        "18080",
        "--metrics-port=18080",
        "-b=127.0.0.1:18080",
        "--workers",
        "8080",
    ]


def test_dockerfile_final_stage():
    text = """
FROM python:3.11-slim AS build
WORKDIR /build
CMD ["never"]
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \\
    GREETING="hello world"
ENV LEGACY some value
WORKDIR /app
WORKDIR src
ENTRYPOINT ["gunicorn", \\
            "--config", "python:app.conf"]
CMD ["app:create_app()"]
"""
    env = (("PYTHONUNBUFFERED", "1"), ("GREETING", "hello world"), ("LEGACY", "some value"))
    assert parse_dockerfile(text) == ImageDefaults(
        "/app/src", ("gunicorn", "--config", "python:app.conf"), ("app:create_app()",), env
    )
    assert parse_dockerfile("FROM x\nCMD python -m app\n").cmd == ("/bin/sh", "-c", "python -m app")


def test_command_and_args_follow_kubernetes():
    image = ImageDefaults("/app", ("entry",), ("cmd", "1"))
    assert container_argv({}, image, TRAINER, WORKLOAD) == ["entry", "cmd", "1"]
    assert container_argv({"args": ["a"]}, image, TRAINER, WORKLOAD) == ["entry", "a"]
    assert container_argv({"command": ["c"], "args": ["a"]}, image, TRAINER, WORKLOAD) == ["c", "a"]
    with pytest.raises(RefusedError, match="cannot tell what it runs"):
        container_argv({"args": ["a"]}, None, TRAINER, WORKLOAD)


@pytest.mark.parametrize(
    ("image", "component"),
    [
        ("registry.example.com/kubeflow-mnist/mnist-trainer:0.1.0-cpu", "trainer"),
        ("mnist-serving", "serving"),
        ("ghcr.io/me/mnist-frontend@sha256:abc", "frontend"),
    ],
)
def test_images_map_to_components(image, component):
    assert component_for_image(image, WORKLOAD).name == component


def test_an_unknown_image_is_refused():
    with pytest.raises(RefusedError, match="maps to no local environment"):
        component_for_image("nginx:1.27", "Deployment/web")


# Lists Flask's settings with the frontend's Python.
@pytest.mark.slow
def test_frontend_settings_are_checked_against_what_it_publishes(hosts):
    with pytest.raises(RefusedError, match="env FRONTEND_SELDON_ULR is not a setting of the frontend"):
        check_settings(FRONTEND, {"FRONTEND_SELDON_ULR": "http://x"}, hosts, "Deployment/mnist-frontend")
    assert (
        check_settings(
            FRONTEND, {"FRONTEND_SELDON_URL": "http://127.0.0.1:1/", "FRONTEND_SECRET_KEY": "k"}, hosts, WORKLOAD
        )
        == {}
    )


# Lists Flask's settings with the frontend's Python.
@pytest.mark.slow
def test_an_unset_url_setting_gets_its_in_cluster_default_resolved(hosts):
    added = check_settings(FRONTEND, {}, hosts, WORKLOAD)
    assert added == {"FRONTEND_SELDON_URL": "http://127.0.0.1:9100/api/v1.0/predictions"}


def test_a_port_variable_follows_the_service_its_address_variable_names():
    hosts = HostMap("default")
    hosts.add("mnist-ddp-master-0", {23456: 40000})
    raw = {"MASTER_ADDR": "mnist-ddp-master-0", "OTHER_HOST": "example.com"}
    assert paired_port("MASTER_PORT", 23456, raw, hosts) == 40000
    assert paired_port("OTHER_PORT", 23456, raw, hosts) == 23456
    assert paired_port("MASTER_PORT", 1234, raw, hosts) == 1234
