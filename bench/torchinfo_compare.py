#!/usr/bin/env python
"""dimfix --check versus torchinfo.summary on two big vision models (prints
figures; not a test).

A ResNet-152 (Bottleneck, [3, 8, 36, 3]) and a ViT-L/16 (patch 16, d_model
1024, 24 layers, 16 heads, MLP 4096, built from nn.TransformerEncoderLayer)
are written by this script into one file, model.py, in a temporary folder.
Both are correct, so both tools only look at them. Each is measured as a
whole process, on the same file, on a 1x3x224x224 input:

  torchinfo  python -c "from model import M; import torchinfo;
                        torchinfo.summary(M(), input_size=(1, 3, 224, 224))"
             (builds the model with its real initialization and runs it on CPU)
  dimfix     dimfix model.py::M --input 1x3x224x224 --check

interleaved round by round with ``python -c "import torch"`` after one untimed
warm-up round. Every child runs in its own process group under RLIMIT_AS
(--mem-limit-gib, default 6) and a timeout. Each run is checked: both exit 0,
torchinfo prints the expected parameter count, the file is unchanged; one
extra untimed ``dimfix -v`` run per model shows which device traced it.

Usage:  python bench/torchinfo_compare.py [--runs N | --quick]
Needs:  pip install -e '.[bench]'   (torchinfo)
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from latency import (  # noqa: E402  (the runner, guards and RSS method are shared)
    Case, Run, dimfix_command, mark, measure, parse_options, print_cases, print_figures, print_setup,
)

INPUT = (1, 3, 224, 224)
INPUT_FLAG = "x".join(map(str, INPUT))

SOURCE = '''\
"""ResNet-152 and ViT-L/16, both correct: written by bench/torchinfo_compare.py."""
import torch
import torch.nn as nn


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        width = planes
        self.conv1 = nn.Conv2d(in_planes, width, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_planes != planes * self.expansion:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes * self.expansion, kernel_size=1, stride=stride,
                          bias=False),
                nn.BatchNorm2d(planes * self.expansion),
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, layers, num_classes=1000):
        super().__init__()
        self.in_planes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * Bottleneck.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, planes, blocks, stride=1):
        layers = [Bottleneck(self.in_planes, planes, stride)]
        self.in_planes = planes * Bottleneck.expansion
        for _ in range(1, blocks):
            layers.append(Bottleneck(self.in_planes, planes))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def ResNet152(num_classes=1000):
    return ResNet([3, 8, 36, 3], num_classes)


class ViTL16(nn.Module):
    def __init__(self, image_size=224, patch_size=16, d_model=1024, n_layers=24, n_heads=16,
                 mlp_dim=4096, num_classes=1000):
        super().__init__()
        n_patches = (image_size // patch_size) ** 2
        self.patch_embed = nn.Conv2d(3, d_model, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d_model))
        self.pos_embed = nn.Parameter(torch.zeros(1, n_patches + 1, d_model))
        layer = nn.TransformerEncoderLayer(d_model, n_heads, mlp_dim, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + self.pos_embed
        x = self.norm(self.encoder(x))
        return self.head(x[:, 0])
'''


@dataclass(frozen=True)
class Model:
    name: str  # PATH::NAME target in model.py
    label: str
    params: int  # expected total (checked against torchinfo's count)
    target: float  # dimfix/torchinfo, for both time and peak RSS


def resnet152_params() -> int:
    def bn(c):
        return 2 * c

    total = 3 * 64 * 49 + bn(64)
    in_planes = 64
    for planes, blocks in ((64, 3), (128, 8), (256, 36), (512, 3)):
        for i in range(blocks):
            out = planes * 4
            total += in_planes * planes + bn(planes) + planes * planes * 9 + bn(planes)
            total += planes * out + bn(out)
            if i == 0:
                total += in_planes * out + bn(out)
            in_planes = out
    return total + 2048 * 1000 + 1000


def vit_l16_params() -> int:
    d, mlp, layers, patches = 1024, 4096, 24, (224 // 16) ** 2
    layer = (3 * d * d + 3 * d) + (d * d + d) + (d * mlp + mlp) + (mlp * d + d) + 2 * (2 * d)
    return 3 * d * 16 * 16 + d + d + (patches + 1) * d + layers * layer + 2 * d + d * 1000 + 1000


MODELS = [
    Model("ResNet152", "ResNet-152", resnet152_params(), 0.7),
    Model("ViTL16", "ViT-L/16", vit_l16_params(), 0.3),
]


def torchinfo_code(model: Model) -> str:
    return (f"from model import {model.name}; import torchinfo; "
            f"torchinfo.summary({model.name}(), input_size={INPUT})")


def cases_for(model: Model, folder: Path, dimfix: List[str], timeout: float) -> List[Case]:
    path = folder / "model.py"

    def unchanged() -> Optional[str]:
        return None if path.read_text(encoding="utf-8") == SOURCE else "model.py changed"

    def verify_torchinfo(run: Run) -> Optional[str]:
        if run.rc != 0:
            return f"exit {run.rc}, expected 0"
        found = re.search(r"Total params: ([\d,]+)", run.stdout)
        if not found:
            return "no 'Total params' line in torchinfo's output"
        if int(found.group(1).replace(",", "")) != model.params:
            return f"torchinfo counts {found.group(1)} params, expected {model.params:,d}"
        return unchanged()

    def verify_dimfix(run: Run) -> Optional[str]:
        if run.rc != 0:
            return f"exit {run.rc}, expected 0 (the model is correct)"
        return unchanged()

    return [
        Case(f"ti-{model.name}", f"torchinfo {model.label}",
             [sys.executable, "-c", torchinfo_code(model)], folder, timeout,
             verify=verify_torchinfo),
        Case(f"df-{model.name}", f"dimfix --check {model.label}",
             [*dimfix, f"model.py::{model.name}", "--input", INPUT_FLAG, "--check"], folder, timeout,
             verify=verify_dimfix),
    ]


def traced_on(dimfix: List[str], model: Model, folder: Path, timeout: float) -> str:
    """Which device dimfix traced the model on (one untimed -v run)."""
    try:
        proc = subprocess.run([*dimfix, f"model.py::{model.name}", "--input", INPUT_FLAG,
                               "--check", "-v"], cwd=folder, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timed out"
    found = re.search(r"traced on (\w+)", proc.stderr)
    return found.group(1) if found else f"? (exit {proc.returncode}: {proc.stderr.strip()[-200:]})"


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    opts, runs, runner = parse_options(ap, argv)
    try:
        import torchinfo
        ti_version = torchinfo.__version__
    except ImportError:
        print("torchinfo is not installed: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    import torch

    print("dimfix --check vs torchinfo.summary")
    print(f"  python     {sys.executable} ({sys.version.split()[0]}), torch {torch.__version__}, "
          f"torchinfo {ti_version}, {torch.get_num_threads()} torch threads")
    print(f"  dimfix     {shlex.join(dimfix_command())}")
    print_setup(opts, runs, runner, 10)
    print(f"  input      {INPUT_FLAG}")
    for m in MODELS:
        print(f"  {m.label:10s} {m.params:,d} params ({m.params * 4 / 1e6:.0f} MB as float32)")

    with tempfile.TemporaryDirectory(prefix="dimfix-torchinfo-") as tmp_s:
        folder = Path(tmp_s)
        (folder / "model.py").write_text(SOURCE, encoding="utf-8")
        dimfix = dimfix_command()
        for m in MODELS:
            print(f"  dimfix traced {m.label} on: {traced_on(dimfix, m, folder, opts.timeout)}")
        print(f"  torchinfo: (cd TMP && {shlex.join([sys.executable, '-c', torchinfo_code(MODELS[0])])})")
        print(f"  dimfix:    (cd TMP && {shlex.join([*dimfix, f'model.py::{MODELS[0].name}', '--input', INPUT_FLAG, '--check'])})")
        print(flush=True)

        cases = [Case("import", 'python -c "import torch"', [sys.executable, "-c", "import torch"],
                      folder, opts.timeout)]
        for m in MODELS:
            cases += cases_for(m, folder, dimfix, opts.timeout)
        measure(runner, cases, runs, warmup=not opts.no_warmup)

    by = {c.name: c for c in cases}
    base = by["import"].median_wall()
    print_cases(cases, base, 30)

    rows = []
    for m in MODELS:
        ti, df = by[f"ti-{m.name}"], by[f"df-{m.name}"]
        t_ti, t_df = ti.median_wall(), df.median_wall()
        r_ti, r_df = ti.peak_rss_mb(), df.peak_rss_mb()
        if t_ti and t_df is not None:
            r = t_df / t_ti
            # torchinfo computes on 2 threads and slows down far more than dimfix
            # under other load: the ratio of the fastest runs shows how much.
            lo = min(x.wall for x in df.good()) / min(x.wall for x in ti.good())
            rows.append((f"{m.label}: time dimfix / torchinfo",
                         f"{r:.3f}x ({t_df:.3f} / {t_ti:.3f} s; fastest runs {lo:.2f}x)",
                         f"<= {m.target:g}x", mark(r <= m.target)))
        else:
            rows.append((f"{m.label}: time dimfix / torchinfo", "no valid run", f"<= {m.target:g}x", "MISS"))
        if r_ti and r_df is not None:
            r = r_df / r_ti
            rows.append((f"{m.label}: peak RSS dimfix / torchinfo", f"{r:.3f}x ({r_df:.0f} / {r_ti:.0f} MB)",
                         f"<= {m.target:g}x", mark(r <= m.target)))
        else:
            rows.append((f"{m.label}: peak RSS dimfix / torchinfo", "no valid run", f"<= {m.target:g}x", "MISS"))
        for c in (ti, df):
            if len(c.good()) != len(c.runs):
                rows.append((f"{c.label}: runs valid", f"{len(c.good())}/{len(c.runs)}", "all", "MISS"))

    print_figures(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
