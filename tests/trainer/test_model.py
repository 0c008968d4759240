"""The model definition that serving imports: shapes, dtype, names, and its fused inference form."""

import subprocess

import pytest
import torch
from support.processes import component_env, venv_bin
from torch import nn

from mnist_ddp.model import ARCHITECTURE, MnistNet, build_model, fuse_for_inference


@pytest.mark.parametrize("batch", [1, 7])
def test_output_is_float32_logits_per_class(batch):
    model = build_model(ARCHITECTURE).eval()
    with torch.inference_mode():
        logits = model(torch.rand(batch, 1, 28, 28))
    assert logits.shape == (batch, 10)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


def test_build_model_rejects_an_unknown_architecture():
    with pytest.raises(ValueError, match="unknown architecture 'resnet'"):
        build_model("resnet")


def test_state_dict_loads_with_weights_only(tmp_path):
    torch.manual_seed(0)
    model = MnistNet()
    torch.save(model.state_dict(), tmp_path / "model.pt")
    restored = MnistNet()
    restored.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(model.eval()(x), restored.eval()(x))


def test_model_imports_without_the_training_code():
    code = (
        "import sys, mnist_ddp.model, mnist_ddp.model_store; "
        "loaded = [m for m in ('torchvision', 'numpy', 'mnist_ddp.trainer', 'mnist_ddp.data') if m in sys.modules]; "
        "print(loaded)"
    )
    out = subprocess.run(
        [venv_bin("trainer"), "-c", code], env=component_env("trainer"), capture_output=True, text=True, check=True
    )
    assert "torchvision" not in out.stdout
    assert "mnist_ddp.trainer" not in out.stdout
    assert "mnist_ddp.data" not in out.stdout


def _model_with_learned_statistics() -> MnistNet:
    """A model whose BatchNorm layers hold non-trivial statistics and affine parameters, as after training."""
    torch.manual_seed(3)
    model = MnistNet().train()
    with torch.no_grad():
        for _ in range(5):
            model(torch.rand(16, 1, 28, 28) * torch.rand(16, 1, 1, 1))
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    return model.eval()


@pytest.mark.parametrize("batch", [1, 5])
def test_fused_model_gives_the_logits_of_the_eval_model(batch):
    model = _model_with_learned_statistics()
    fused = fuse_for_inference(model)
    images = torch.rand(batch, 1, 28, 28)
    with torch.inference_mode():
        expected = model(images)
    logits = fused(images)
    assert logits.shape == (batch, 10)
    assert not logits.requires_grad
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)


def test_fused_model_ignores_later_changes_to_the_trained_model():
    model = _model_with_learned_statistics()
    fused = fuse_for_inference(model)
    images = torch.rand(2, 1, 28, 28)
    before = fused(images)
    with torch.no_grad():
        model.features[0].weight.zero_()
    torch.testing.assert_close(fused(images), before)


def test_fusing_refuses_a_padded_first_convolution():
    model = MnistNet()
    model.features[0].padding = (1, 1)
    with pytest.raises(ValueError, match="unpadded Conv2d"):
        fuse_for_inference(model)
