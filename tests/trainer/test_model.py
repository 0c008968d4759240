"""The model definition that serving imports: shapes, dtype, names."""

import subprocess

import pytest
import torch
from support.processes import component_env, venv_bin

from mnist_ddp.model import ARCHITECTURE, MnistNet, build_model


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
