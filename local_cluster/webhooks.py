"""An operator's own webhook configurations, pointed at a server on 127.0.0.1.

The configurations come from the operator's upstream manifests (rendered from its Go module), so the
webhooks' names, rules, object selectors and failure policies are the ones its install creates. Only
where the API server sends the review changes: from the operator's Service (unreachable here, with no
kube-proxy) to `https://127.0.0.1:<port><path>`, trusting the local CA, as controller-runtime's envtest does.
"""

from __future__ import annotations

import base64
import copy
import subprocess
from pathlib import Path

import yaml

WEBHOOK_KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")


def render(kubectl: str, kustomization: Path) -> list[dict]:
    """`kubectl kustomize` of an upstream folder, as objects."""
    done = subprocess.run([kubectl, "kustomize", str(kustomization)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {kustomization}: {done.stderr.strip()}")
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def on_loopback(objects: list[dict], port: int, ca_cert: Path, name_prefix: str = "") -> list[dict]:
    """The webhook configurations among `objects`, each webhook sent to 127.0.0.1:`port`."""
    ca_bundle = base64.b64encode(ca_cert.read_bytes()).decode()
    configs = []
    for obj in objects:
        if obj["kind"] not in WEBHOOK_KINDS:
            continue
        config = copy.deepcopy(obj)
        if name_prefix and not config["metadata"]["name"].startswith(name_prefix):
            config["metadata"]["name"] = name_prefix + config["metadata"]["name"]
        for hook in config["webhooks"]:
            path = hook["clientConfig"]["service"].get("path", "/")
            hook["clientConfig"] = {"url": f"https://127.0.0.1:{port}{path}", "caBundle": ca_bundle}
        configs.append(config)
    return configs
