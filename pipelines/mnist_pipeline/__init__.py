"""The Kubeflow Pipelines pipeline `mnist-ddp-pipeline`: train (a PyTorchJob), evaluate (a gate), promote.

The steps' logic lives in plain modules (`job`, `kube`, `gate`); `components` wraps them for KFP
and `pipeline` wires them together.
"""
