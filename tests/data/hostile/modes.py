import torch.nn as nn


class TrainOnlyHead(nn.Module):
    """An auxiliary head that runs only in training, as in Inception."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(8, 16)
        self.aux = nn.Linear(12, 4)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        x = self.body(x)
        if self.training:
            return self.fc(x), self.aux(x)
        return self.fc(x)


class ModesDisagree(nn.Module):
    def __init__(self):
        super().__init__()
        self.expand = nn.Linear(8, 16)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        if self.training:
            x = self.expand(x)
        return self.fc(x)


class BatchNormAtBatchOne(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 16)
        self.bn = nn.BatchNorm1d(16)
        self.fc2 = nn.Linear(12, 4)

    def forward(self, x):
        return self.fc2(self.bn(self.fc1(x)))


class FoldsTheBatch(nn.Module):
    """Folds the batch into the features: the size that fits batch 1 is no fix."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x.view(-1))


class FoldsTheBatchInTraining(nn.Module):
    """Only the auxiliary head, run in training, folds the batch."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(8, 16)
        self.aux = nn.Linear(12, 4)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        x = self.body(x)
        if self.training:
            return self.fc(x), self.aux(x.reshape(-1))
        return self.fc(x)
