"""The baseline of `make bench-serve`: the original tutorial's serving setup.

The pytorch/examples MNIST CNN (conv 32, conv 64, max-pool, dropout, fc 9216->128,
fc 128->10) in a plain Seldon class using `predict(X, names)`, built in the
constructor, run with the Seldon wrapper's defaults (1 gunicorn worker,
1 thread, a gRPC worker, torch's default thread count). Weights are random:
only the cost of an answer is measured.
"""

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn


class Net(nn.Module):
    """pytorch/examples mnist/main.py `Net`."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        return F.log_softmax(self.fc2(x), dim=1)


class BaselineMnist:
    """Seldon model class as the tutorial wrote it: model built in __init__, normalisation in predict."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.model = Net()
        self.model.eval()

    def predict(self, X: np.ndarray, feature_names) -> np.ndarray:  # noqa: N803
        """Probabilities (n, 10) for images (n, 784) or (n, 28, 28) in [0, 1]."""
        x = torch.from_numpy(np.asarray(X, dtype=np.float32)).view(-1, 1, 28, 28)
        x = (x - 0.1307) / 0.3081
        return self.model(x).exp().detach().numpy()
