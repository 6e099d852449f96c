"""How long libcst takes to parse a model file (and resolve positions, as
locate.CallIndex does) by its size: what locate.MAX_PLAN_BYTES rests on.

    python bench/parse_size.py [SIZE_MIB ...]     # default: 0.25 1 2
"""

import sys
import time

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

BLOCK = '''
class Block{i}(nn.Module):
    def __init__(self, dim=64):
        super().__init__()
        self.fc = nn.Linear(dim, dim * 2)  # a comment
        self.norm = nn.LayerNorm(dim * 2)

    def forward(self, x):
        return self.norm(self.fc(x))
'''


def model_text(mib: float) -> str:
    parts, size, i = ["import torch.nn as nn\n"], 0, 0
    while size < mib * 2**20:
        parts.append(BLOCK.format(i=i))
        size += len(parts[-1])
        i += 1
    return "".join(parts)


def main() -> None:
    for mib in [float(a) for a in sys.argv[1:]] or [0.25, 1, 2]:
        text = model_text(mib)
        start = time.perf_counter()
        module = cst.parse_module(text)
        parsed = time.perf_counter() - start
        MetadataWrapper(module).resolve(PositionProvider)
        total = time.perf_counter() - start
        print(f"{mib:g} MiB: parse {parsed:.1f} s, with positions {total:.1f} s", flush=True)


if __name__ == "__main__":
    main()
