import torch
import torch.nn as nn


class NeedsCuda(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2).cuda()

    def forward(self, x):
        return self.fc(x.cuda())
