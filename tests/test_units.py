"""Positions and scopes per top-level statement (units.py, follow/scopes.py)
agree with libcst's providers run over the whole module: on fixtures of each
kind of file (module constants, configs, argparse scripts, loops, helpers in
another file, tabs, a notebook's cells) and on the odd cases below."""

from __future__ import annotations

from pathlib import Path

import libcst as cst
import pytest
from libcst.metadata import MetadataWrapper, PositionProvider, ScopeProvider

from dimfix.follow.scopes import Scopes
from dimfix.locate import CallIndex

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
KINDS = ["cross_file_edit", "head_shared_class_constant", "origin_shared_constant_one_wrong",
         "scope_global_dcgan_nc", "origin_argparse_namespace_param", "script_training_loop",
         "origin_config_loop_enumerate", "scope_loop_variable_bound_again",
         "swap_index_loop_offset", "structure_bidirectional_global_alike",
         "table_vit_image_size", "formatting_confined"]
FILES = sorted(p for kind in KINDS for p in (FIXTURES / kind).glob("*.py"))

EDGES = [
    "x = 1; y = x\n@dec\n# between\n@dec2(y)\ndef f(a=x):\n    return a + y\n",
    "if True:\n    N = 3\nclass A:\n    n = N\n    def g(self):\n        global M\n        M = N\n",
    "def f():\n    return (k := 4)\n\nv = [k for _ in range(2)]\nz = f() # no newline",
    "a = 1\r\nb = a\r\n\r\ndef g():\r\n    return a\r\n",
    "import os\n\n\ndef h():\n\tx = os.sep\n\treturn x\n\n\n# trailing comment\n",
]


def _index(text: str) -> CallIndex:
    return CallIndex(text, "m.py")


def _cases():
    yield from ((f"{p.parent.name}/{p.name}", p.read_text()) for p in FILES)
    yield from ((f"edge{i}", t) for i, t in enumerate(EDGES))


@pytest.mark.parametrize("text", [t for _, t in _cases()], ids=[n for n, _ in _cases()])
def test_positions_and_scopes_agree_with_libcst(text):
    index = _index(text)
    module = index.module
    full = MetadataWrapper(module, unsafe_skip_copy=True)
    positions = full.resolve(PositionProvider)
    scopes = full.resolve(ScopeProvider)
    for node in index.parents:
        assert node in index.positions
        if node in positions:
            assert index.positions[node] == positions[node], node
    # A fresh Scopes of a second parse, asked about the last statements first
    # (on the odd cases, a fresh one for each statement): what one fix reads
    # sees what the whole module's provider gives.
    twin_index = _index(text)
    pairs = dict(zip(_nodes(module), _nodes(twin_index.module)))
    lazy = Scopes(twin_index)
    for unit in reversed(module.body):
        if text in EDGES:
            lazy = Scopes(twin_index)
        for node in _nodes(unit):
            if not isinstance(node, cst.Name) or scopes.get(node) is None:
                continue
            want = _described(scopes[node][node.value], pairs)
            twin = pairs[node]
            assert _described(lazy[twin][twin.value], None) == want, (node.value, text)


def _nodes(module):
    found = []

    class Visit(cst.CSTVisitor):
        def on_visit(self, node):
            found.append(node)
            return True

    module.visit(Visit())
    return found


def _described(assignments, pairs):
    """Each binding as (its node, the nodes reading it), comparable across the
    two parses (``pairs`` maps the first parse's nodes to the second's)."""
    m = (lambda n: pairs[n]) if pairs else (lambda n: n)
    node = lambda a: getattr(a, "node", a.name)  # noqa: E731 - a builtin has no node
    return {(m(node(a)) if isinstance(node(a), cst.CSTNode) else node(a),
             frozenset(m(r.node) for r in a.references)) for a in assignments}
