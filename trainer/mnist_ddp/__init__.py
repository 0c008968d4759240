"""Distributed (DDP) MNIST trainer run by a Kubeflow PyTorchJob.

`model` and `model_store` import nothing but torch and the standard library,
so the model server reuses them without the training code.
"""
