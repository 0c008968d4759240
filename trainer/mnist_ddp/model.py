"""The MNIST classifier, shared by the trainer and the model server.

`MnistNet` is what the trainer trains and publishes (its state_dict); the model
server loads it and serves `fuse_for_inference(model)`, the same function of the
input in fewer, cheaper operations.
"""

import torch
from torch import nn
from torch.nn import functional

ARCHITECTURE = "mnist-cnn-v2"
NUM_CLASSES = 10
IMAGE_SIZE = 28
# Normalisation of the [0, 1] input, part of the model so callers never repeat it.
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
CHANNELS = (8, 16, 32, 32)
STRIDES = (1, 2, 2, 1)
FEATURE_SIZE = 3  # 28 -> 26 -> 12 -> 5 -> 3: unpadded 3x3 convolutions with the strides above


class MnistNet(nn.Module):
    """A small CNN: MNIST accuracy on a par with far larger networks, for tens of microseconds per image.

    Four unpadded 3x3 convolutions (8, 16, 32, 32 channels; the middle two with stride 2, so
    28 -> 26 -> 12 -> 5 -> 3), each with BatchNorm and ReLU, then a linear layer 288 -> 10:
    18k parameters and 0.4 million multiply-adds per image. The first convolution has no
    padding so that the input normalisation folds into it exactly (see fuse_for_inference).

    Input: float tensor (n, 1, 28, 28), values in [0, 1], white digit on black.
    Output: logits (n, 10).
    """

    def __init__(self) -> None:
        super().__init__()
        blocks = []
        in_channels = 1
        for out_channels, stride in zip(CHANNELS, STRIDES, strict=True):
            blocks += [
                nn.Conv2d(in_channels, out_channels, 3, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
            ]
            in_channels = out_channels
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_channels * FEATURE_SIZE * FEATURE_SIZE, NUM_CLASSES),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - MNIST_MEAN) / MNIST_STD
        return self.classifier(self.features(x))


class FusedMnistNet:
    """MnistNet reduced for inference: the same logits (to float rounding) in half the operations.

    Built by fuse_for_inference. Every BatchNorm and the input normalisation are folded
    into the convolution weights, and the final linear layer becomes a convolution over
    the 3x3 feature map, so a forward pass is four conv+ReLU pairs and one convolution.
    The weights are plain tensors that do not require gradients, so no autograd graph is
    recorded without any grad-mode context. Channels-last weights select PyTorch's
    faster CPU convolution kernels for single images.

    Call with a float tensor (n, 1, 28, 28), values in [0, 1]; returns logits (n, 10).
    """

    def __init__(self, convs: list[tuple[torch.Tensor, torch.Tensor, int]], head: tuple[torch.Tensor, torch.Tensor]):
        self.convs = [
            (weight.contiguous(memory_format=torch.channels_last), bias, stride) for weight, bias, stride in convs
        ]
        self.head = (head[0].contiguous(memory_format=torch.channels_last), head[1])

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images
        for weight, bias, stride in self.convs:
            x = functional.conv2d(x, weight, bias, stride).relu_()
        return functional.conv2d(x, *self.head).flatten(1)


@torch.no_grad()
def fuse_for_inference(model: MnistNet) -> FusedMnistNet:
    """Fold `model`'s normalisation and BatchNorm statistics into its convolutions (eval-mode behaviour)."""
    layers = list(model.features)
    convs = []
    for index in range(0, len(layers), 3):
        conv, norm = layers[index], layers[index + 1]
        if not (isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d) and conv.padding == (0, 0)):
            raise ValueError(f"features[{index}:{index + 2}] is not an unpadded Conv2d followed by BatchNorm2d")
        # BatchNorm in eval mode is y = z * scale + (beta - mean * scale), per output channel.
        scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
        weight = conv.weight * scale[:, None, None, None]
        bias = norm.bias - norm.running_mean * scale
        if index == 0:
            # conv(w, (x - m) / s) = conv(w / s, x) - (m / s) * sum(w): exact because conv1 has no padding.
            bias = bias - (MNIST_MEAN / MNIST_STD) * weight.sum(dim=(1, 2, 3))
            weight = weight / MNIST_STD
        convs.append((weight, bias, conv.stride[0]))  # new tensors, computed without grad
    linear = model.classifier[1]
    channels = convs[-1][0].shape[0]
    # Flatten orders features (channel, row, column): the layout of a convolution weight.
    head_weight = linear.weight.detach().reshape(NUM_CLASSES, channels, FEATURE_SIZE, FEATURE_SIZE).clone()
    return FusedMnistNet(convs, (head_weight, linear.bias.detach().clone()))


def build_model(architecture: str = ARCHITECTURE) -> nn.Module:
    """Return an untrained model for `architecture` (the name stored in metadata.json)."""
    if architecture != ARCHITECTURE:
        raise ValueError(f"unknown architecture {architecture!r}; this code knows {ARCHITECTURE!r}")
    return MnistNet()
