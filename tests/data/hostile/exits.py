"""Models that leave by doors other than an exception."""
import os
import sys
import threading
import time

import torch.nn as nn


class ExitsInInit(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)
        sys.exit(0)

    def forward(self, x):
        return self.fc(x)


class ExitsInForward(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        sys.exit(3)


class HardExit(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        os._exit(0)


class Weird(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        raise BaseException("weird")


class GenExit(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        raise GeneratorExit()


class Segfaults(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        import ctypes

        ctypes.string_at(0)


class SwallowsTimeout(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        while True:
            try:
                time.sleep(0.05)
            except Exception:
                pass


class IgnoresAlarm(nn.Module):
    def __init__(self):
        super().__init__()
        import signal

        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        while True:
            time.sleep(0.05)


class StartsThread(nn.Module):
    def __init__(self):
        super().__init__()
        threading.Thread(target=time.sleep, args=(3600,)).start()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x)


class Allocates(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        import torch

        hog = torch.ones(3 * 2**30, dtype=torch.uint8)  # 3 GiB
        return self.fc(x) + hog[0]
