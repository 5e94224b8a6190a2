"""Networks a user might bring, written as plain PyTorch (not from mapscope's spec).

The CLI tests load them with ``--module tests/user_nets.py:LeNet5``; nothing here imports
mapscope.
"""

import torch
from torch import nn
from torch.nn import functional as F


class LeNet5(nn.Module):
    """LeCun et al. 1998 for 28x28 MNIST digits: the first convolution pads by 2 so that the
    classic 32x32 geometry follows; tanh and average pooling as in the paper."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2),
            nn.Tanh(),
            nn.AvgPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.Tanh(),
            nn.AvgPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120),
            nn.Tanh(),
            nn.Linear(120, 84),
            nn.Tanh(),
            nn.Linear(84, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class ColourNet(nn.Module):
    """A small network for 3-channel 32x32 images, written the functional way (activations
    in ``forward``, so only the convolutions and linears are modules)."""

    def __init__(self, classes: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(16 * 8 * 8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        return self.fc(torch.flatten(x, 1))


def make_lenet() -> nn.Module:
    return LeNet5()


def fit(net, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int = 0):
    """A plain PyTorch training loop, as the user would have written it; on one thread, so that
    it trains the same network in one process and in an xdist worker."""
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(net.parameters(), 2e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(epochs):
            for i in range(0, len(x), 100):
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(net(x[i : i + 100]), y[i : i + 100]).backward()
                optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return net.eval()
