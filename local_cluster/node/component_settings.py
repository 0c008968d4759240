"""Settings a component publishes (ENV_PREFIX and DEFAULTS), checked against the environment a manifest gives it.

A Flask app that reads `app.config.from_prefixed_env(PREFIX)` silently ignores a
misspelt variable and falls back to its default; the runner refuses such a name instead.
"""

import ast
import subprocess

from local_cluster.node.components import REPO, Component
from local_cluster.node.errors import RefusedError
from local_cluster.node.translate import HostMap


def published_settings(component: Component) -> tuple[str, dict] | None:
    """(ENV_PREFIX, DEFAULTS) from the component's settings module, read without importing it."""
    if component.settings_module is None or not (REPO / component.settings_module).exists():
        return None
    tree = ast.parse((REPO / component.settings_module).read_text())
    prefix, defaults = None, None
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            continue
        if node.targets[0].id == "ENV_PREFIX":
            prefix = ast.literal_eval(node.value)
        elif node.targets[0].id == "DEFAULTS" and isinstance(node.value, ast.Dict):
            # Only the keys and the literal values matter here; computed values stay None.
            defaults = {
                ast.literal_eval(k): _literal_or_none(v)
                for k, v in zip(node.value.keys, node.value.values, strict=True)
            }
    if prefix is None or defaults is None:
        return None
    return prefix, defaults


def _literal_or_none(node: ast.expr):
    try:
        return ast.literal_eval(node)
    except ValueError:
        return None


def framework_settings(component: Component) -> set[str]:
    """Flask's own configuration keys, which `from_prefixed_env` (how the frontend reads FRONTEND_*) also sets."""
    python = component.bin_dir / "python"
    code = "import flask; print('\\n'.join(flask.Flask.default_config))"
    try:
        result = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError):
        return set()
    return set(result.stdout.split())


def check_settings(component: Component, env: dict[str, str], hosts: HostMap, workload: str) -> dict[str, str]:
    """Refuse a prefixed variable the component does not read; resolve in-cluster URL defaults left unset.

    Returns variables to add: a default URL naming an in-cluster Service works on a
    cluster through DNS, which a local process lacks, so it is passed explicitly.
    """
    published = published_settings(component)
    if published is None:
        return {}
    prefix, defaults = published
    known = set(defaults) | framework_settings(component)
    for name in env:
        if name.startswith(prefix + "_"):
            key = name[len(prefix) + 1 :].split("__", 1)[0]
            if key not in known:
                expected = ", ".join(f"{prefix}_{k}" for k in defaults)
                raise RefusedError(
                    workload, f"env {name} is not a setting of the {component.name} (it reads {expected})"
                )
    added = {}
    for key, default in defaults.items():
        name = f"{prefix}_{key}"
        if name not in env and isinstance(default, str) and "://" in default:
            added[name] = hosts.translate_text(default, f"default of {name}", workload)
    return added
