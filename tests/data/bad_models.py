"""Models that fail in ways dimfix must report as one clear line."""

import torch
from torch import nn

NOT_A_MODEL = 5


class RaisesInInit(nn.Module):
    def __init__(self):
        super().__init__()
        raise ValueError("unsupported configuration")


class RaisesInForward(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        raise KeyError("missing feature")


class NoForward(nn.Module):
    pass


class Plain:
    pass


class Good(nn.Module):
    def __init__(self, width=4):
        super().__init__()
        self.fc = nn.Linear(width, 2)

    def forward(self, x):
        return torch.relu(self.fc(x))


def returns_int():
    return 3


class NeedsTwo(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x, y):
        return self.fc(x + y)


def factory_raises():
    raise RuntimeError("no such checkpoint")


class Interrupted(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        raise KeyboardInterrupt


class Forever(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        while True:
            pass


class TinyConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 8 * 8, 2)

    def forward(self, x):
        return self.fc(self.conv(x).flatten(-3))


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.scores = nn.Linear(4, 5)
        self.box = nn.Linear(4, 4)

    def forward(self, x):
        return {"scores": self.scores(x), "box": self.box(x)}
