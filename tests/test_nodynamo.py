"""The stand-in for torch._dynamo in dimfix's children and worker (nodynamo.py)
is transparent: a model that uses torch.compile or reads torch._dynamo gets the
same answer with it as without it (DIMFIX_DYNAMO_STAND_IN=0)."""

import json
import subprocess
import sys
import textwrap

from conftest import run_process

COMPILED = '''\
import torch
import torch.nn as nn


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.fc = nn.Linear(16 * 8 * 8, 10)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        x = nn.functional.max_pool2d(x, 2)
        return self.fc(x.flatten(1))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = torch.compile(Encoder(), backend="eager")

    def forward(self, x):
        return self.encoder(x)
'''

# Traced on meta (the embedding alone is 512 MB): the refs of the first
# layers run under the stand-in, then the forward reads torch._dynamo.
READER = '''\
import torch
import torch.nn as nn

VOCAB, WIDTH = 65536, 2048


class LM(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.norm = nn.LayerNorm(WIDTH)
        self.up = nn.Linear(WIDTH, 4 * WIDTH)
        self.down = nn.Linear(2 * WIDTH, WIDTH)
        self.head = nn.Linear(WIDTH, VOCAB)

    def forward(self, idx):
        x = self.norm(self.embed(idx))
        if not torch._dynamo.is_compiling():
            x = x + torch._dynamo.config.cache_size_limit * 0
        return self.head(self.down(torch.relu(self.up(x))))
'''


# Both models in one folder, each declared by its pragma: one batch per mode
# (each a fresh process: this one has torch._dynamo loaded, so the stand-in
# could not be put in place in children forked from it).
MODELS = {
    "compiled.py": COMPILED.replace("class Net(", "# dimfix: input=2x3x32x32\nclass Net("),
    "reader.py": READER.replace("class LM(", "# dimfix: input=long:1x16\nclass LM("),
}


def test_same_answer_with_and_without_the_stand_in(tmp_path):
    answers = {}
    for stand_in in ("1", "0"):
        folder = tmp_path / stand_in
        folder.mkdir()
        (folder / ".git").mkdir()  # the project root: config lookup stops here
        for name, text in MODELS.items():
            (folder / name).write_text(text)
        run = run_process([".", "--format", "json"], folder,
                          env={"DIMFIX_DYNAMO_STAND_IN": stand_in})
        doc = json.loads(run.stdout)
        models = {m["file"]: m for m in doc.pop("models")}
        answers[stand_in] = (run.code, doc, run.stderr.replace(str(folder), "DIR"), models,
                             {name: (folder / name).read_text() for name in MODELS})
    with_, without = answers["1"], answers["0"]
    for name in MODELS:  # model by model, so a difference names its model
        assert with_[3][name] == without[3][name], name
        assert with_[4][name] == without[4][name], name
    assert with_ == without
    code, _, stderr, _, fixed = with_
    assert code == 0, stderr
    assert all(fixed[name] != text for name, text in MODELS.items()), stderr  # one fix each


PROBE = '''\
import sys

import torch
from dimfix import nodynamo

assert nodynamo.install()
stand_in = sys.modules["torch._dynamo"]
with torch.device("meta"):
    torch.nn.Linear(8, 8)(torch.empty(2, 8))
refs = list(nodynamo._given)
assert refs and all(getattr(fn, "__dynamo_disable") is fn for fn in refs)
assert type(sys.modules["torch._dynamo"]).__name__ == "_StandIn"
assert "torch._dynamo.config" not in sys.modules

import torch._dynamo.config  # the real package first, then its submodule once

real = sys.modules["torch._dynamo"]
assert type(real).__name__ == "module" and torch._dynamo is real
assert torch._dynamo.config is sys.modules["torch._dynamo.config"] is real.config
assert torch._dynamo.config.__spec__.loader.__class__.__name__ == "SourceFileLoader"
assert stand_in.disable is real.disable and stand_in.config is real.config
assert not any(hasattr(fn, "__dynamo_disable") for fn in refs)
with torch.device("meta"):
    torch.nn.Linear(8, 8)(torch.empty(2, 8))
assert any(getattr(fn, "__dynamo_disable", fn) is not fn for fn in refs)
assert not nodynamo.install()  # torch._dynamo is imported: nothing to stand in for
print("ok")
'''


def test_the_stand_in_gives_way_to_the_real_package():
    """Until used, the stand-in answers torch's refs; any other use loads the
    real torch._dynamo, executes each of its modules once, and the refs wrap
    themselves in the real disable() again."""
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(PROBE)], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0 and run.stdout == "ok\n", run.stderr
