"""Jupyter notebooks (nbformat 4) as Python scripts, and back.

``read_notebook`` joins the code cells, in order, into one script: each cell
contributes exactly the lines of its source (``source.split("\\n")``, so a cell
whose source ends with a newline contributes a last empty line and an empty
cell one empty line), cells follow each other with nothing in between. IPython
syntax that is not Python is blanked line for line so that line numbers still
map: a cell magic (``%%time`` on the first non-blank line) blanks the whole
cell; line magics (``%matplotlib inline``), shell escapes (``!pip install``),
captures (``files = !ls``, ``t = %timeit f()``) and help lines (``obj?``,
``??obj``) become empty lines, or ``pass`` at their indentation when indented,
so that a block does not lose its body. Lines inside triple-quoted strings are
never blanked.

``Notebook.locate(line)`` maps a script line to ``(cell, line_in_cell)``, both
1-based, where ``cell`` counts ALL cells of the notebook, markdown and raw
included, from the top: ``notebook.ipynb:cell 4:12:30`` is the fourth cell a
reader scrolls past, whatever its execution count (which changes with every
run and is absent from unexecuted cells).

``write_notebook`` does not re-serialize the notebook: it splices new JSON
string tokens into the original text for exactly the source strings that
changed, so every other byte (indentation, key order, escapes, outputs,
metadata, execution counts, trailing newline, a BOM) stays as it was, whatever
wrote the file. A new string is encoded like Jupyter does (``ensure_ascii=False``)
unless the file escapes its non-ASCII characters (``\\u00e9``), then so does
the new string. ``source`` stays a list of lines or a single string, as it was.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Optional

__all__ = ["Notebook", "read_notebook", "write_notebook"]

_CELL_MAGIC = re.compile(r"^\s*%%")
_LINE_MAGIC = re.compile(r"^\s*[%!]")
_CAPTURE = re.compile(r"^\s*[A-Za-z_][\w.]*(\s*,\s*[A-Za-z_][\w.]*)*\s*=\s*[%!]")
_HELP = re.compile(r"^\s*(\?{1,2}[\w.]+|[\w.]+\?{1,2})\s*$")


@dataclass(frozen=True)
class _CodeCell:
    index: int  # position among all cells, 0-based
    first_line: int  # first script line, 1-based
    lines: tuple[str, ...]  # the cell's own lines, as in the notebook
    script_lines: tuple[str, ...]  # the same lines with IPython syntax blanked
    source_is_list: bool
    # spans of the JSON string tokens of ``source`` in Notebook.text:
    # one per list element, or one for a single string
    token_spans: tuple[tuple[int, int], ...]
    elements: tuple[str, ...]  # the decoded strings of those tokens


@dataclass(frozen=True)
class Notebook:
    """A notebook read for dimfix: the script of its code cells and the way back."""

    text: str  # the decoded file, without BOM
    bom: bool
    ensure_ascii: bool
    script: str
    cells: tuple[_CodeCell, ...]
    cell_count: int  # all cells, markdown and raw included

    def locate(self, line: int) -> tuple[int, int]:
        """Script line (1-based) -> (cell number among all cells, line in cell), both 1-based."""
        for cell in self.cells:
            if cell.first_line <= line < cell.first_line + len(cell.lines):
                return cell.index + 1, line - cell.first_line + 1
        raise ValueError(f"line {line} is not in the notebook's script")

    @property
    def line_count(self) -> int:
        return sum(len(cell.lines) for cell in self.cells)


def read_notebook(raw: bytes) -> Notebook:
    """Parse a ``.ipynb`` file; ``ValueError`` when it is not an nbformat 4 notebook."""
    bom = raw.startswith(b"\xef\xbb\xbf")
    try:
        text = raw[3:].decode("utf-8") if bom else raw.decode("utf-8")
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a notebook: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise ValueError("not an nbformat 4 notebook (no top-level 'cells' list)")
    tree = _Spans(text).parse()
    cells_node = _member(tree, "cells")
    cells: list[_CodeCell] = []
    script: list[str] = []
    for index, (cell, node) in enumerate(zip(data["cells"], cells_node.items)):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source_node = _member(node, "source")
        if isinstance(source, list):
            elements = tuple(source)
            spans = tuple((item.start, item.end) for item in source_node.items)
        elif isinstance(source, str):
            elements = (source,)
            spans = ((source_node.start, source_node.end),)
        else:
            raise ValueError(f"cell {index + 1}: source is neither a string nor a list")
        lines = tuple("".join(elements).split("\n"))
        blanked = tuple(_blank_ipython(lines))
        cells.append(
            _CodeCell(
                index=index,
                first_line=len(script) + 1,
                lines=lines,
                script_lines=blanked,
                source_is_list=isinstance(source, list),
                token_spans=spans,
                elements=elements,
            )
        )
        script.extend(blanked)
    return Notebook(
        text=text,
        bom=bom,
        ensure_ascii=_escapes_non_ascii(text),
        script="".join(line + "\n" for line in script),
        cells=tuple(cells),
        cell_count=len(data["cells"]),
    )


def write_notebook(nb: Notebook, new_script: str) -> bytes:
    """The notebook with ``new_script``'s changed lines written into the cells.

    Only lines that differ from ``nb.script`` are written; everything else in
    the file keeps its bytes. ``ValueError`` when the line count differs, when a
    changed line is one that was blanked (IPython syntax), or when a list-form
    source is not one element per line and a change would cross its elements.
    """
    new_lines = new_script.split("\n")
    if new_script.endswith("\n") or not new_script:
        new_lines.pop()
    if len(new_lines) != nb.line_count:
        raise ValueError(
            f"the new script has {len(new_lines)} lines, the notebook's has {nb.line_count}"
        )
    edits: list[tuple[int, int, str]] = []
    for cell in nb.cells:
        start = cell.first_line - 1
        mine = new_lines[start : start + len(cell.lines)]
        if list(mine) == list(cell.script_lines):
            continue
        lines = list(cell.lines)
        for i, (old, new) in enumerate(zip(cell.script_lines, mine)):
            if new == old:
                continue
            if cell.lines[i] != old:
                raise ValueError(
                    f"cell {cell.index + 1}, line {i + 1}: IPython syntax that dimfix "
                    "blanked cannot be changed"
                )
            lines[i] = new
        edits.extend(_cell_edits(nb, cell, "\n".join(lines)))
    text = nb.text
    for start, end, token in sorted(edits, reverse=True):
        text = text[:start] + token + text[end:]
    return (b"\xef\xbb\xbf" if nb.bom else b"") + text.encode("utf-8")


# ---------------------------------------------------------------------------


def _cell_edits(nb: Notebook, cell: _CodeCell, new_text: str) -> list[tuple[int, int, str]]:
    def token(value: str) -> str:
        return json.dumps(value, ensure_ascii=nb.ensure_ascii)

    if not cell.source_is_list:
        (start, end), = cell.token_spans
        return [(start, end, token(new_text))]
    old_text = "".join(cell.elements)
    # Jupyter writes one element per line, newline included (splitlines(True)).
    new_elements = _split_like(cell.elements, old_text, new_text)
    if new_elements is None:
        raise ValueError(
            f"cell {cell.index + 1}: its source list is not one element per line; "
            "dimfix cannot change it without rewriting the whole cell"
        )
    return [
        (start, end, token(new))
        for (start, end), old, new in zip(cell.token_spans, cell.elements, new_elements)
        if new != old
    ]


def _split_like(
    elements: tuple[str, ...], old_text: str, new_text: str
) -> Optional[list[str]]:
    """Split ``new_text`` into as many elements as the old, line-aligned."""
    if not elements:
        return None if new_text else []
    ends = [e.endswith("\n") for e in elements]
    regular = all(e.count("\n") == 1 for e in elements[:-1]) and all(ends[:-1])
    regular = regular and elements[-1].count("\n") == int(ends[-1])
    if not regular:
        return None
    pieces = new_text.split("\n")
    if ends[-1]:  # "a\n" -> lines "a", "" -> elements "a\n"
        if pieces[-1] != "":
            return None  # the new text fills the old trailing empty line
        pieces.pop()
        new = [p + "\n" for p in pieces]
    else:
        new = [p + "\n" for p in pieces[:-1]] + [pieces[-1]]
    return new if len(new) == len(elements) else None


def _escapes_non_ascii(text: str) -> bool:
    if not text.isascii():
        return False
    escaped = (
        r"(?<!\\)(?:\\\\)*\\u"
        r"(?:00[89a-fA-F][0-9a-fA-F]|0[1-9a-fA-F][0-9a-fA-F]{2}|[1-9a-fA-F][0-9a-fA-F]{3})"
    )
    return re.search(escaped, text) is not None


def _blank_ipython(lines: tuple[str, ...]) -> list[str]:
    in_string = _lines_in_strings(lines)
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is not None and _CELL_MAGIC.match(lines[first]):
        return ["" for _ in lines]
    out = []
    for line, inside in zip(lines, in_string):
        if not inside and (
            _LINE_MAGIC.match(line) or _CAPTURE.match(line) or _HELP.match(line)
        ):
            indent = line[: len(line) - len(line.lstrip())]
            out.append(indent + "pass" if indent else "")
        else:
            out.append(line)
    return out


def _lines_in_strings(lines: tuple[str, ...]) -> list[bool]:
    """For each line: does it start inside a triple-quoted string?"""
    result = []
    quote: Optional[str] = None  # the open triple quote
    for line in lines:
        result.append(quote is not None)
        i = 0
        while i < len(line):
            if quote is not None:
                if line[i] == "\\":
                    i += 2
                    continue
                if line.startswith(quote, i):
                    quote, i = None, i + 3
                    continue
                i += 1
                continue
            ch = line[i]
            if ch == "#":
                break
            if line.startswith(('"""', "'''"), i):
                quote, i = line[i : i + 3], i + 3
                continue
            if ch in "\"'":  # a one-line string: skip to its end
                j = i + 1
                while j < len(line) and line[j] != ch:
                    j += 2 if line[j] == "\\" else 1
                i = j + 1
                continue
            i += 1
    return result


# ---------------------------------------------------------------------------
# A JSON reader that keeps the span of every value


@dataclass
class _Node:
    start: int
    end: int
    keys: Optional[list[str]] = None  # objects
    items: Optional[list["_Node"]] = None  # object values / array items


def _member(node: _Node, key: str) -> _Node:
    if node.keys is None or key not in node.keys:
        raise ValueError(f"notebook JSON has no '{key}' where expected")
    # JSON objects may repeat a key; json.loads keeps the last one
    index = len(node.keys) - 1 - node.keys[::-1].index(key)
    return node.items[index]


_WS = re.compile(r"[ \t\n\r]*")
_SCALAR = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null|NaN|-?Infinity")


class _Spans:
    def __init__(self, text: str) -> None:
        self.text = text
        self.decoder = json.JSONDecoder()

    def parse(self) -> _Node:
        return self.value(_WS.match(self.text, 0).end())

    def skip(self, i: int) -> int:
        return _WS.match(self.text, i).end()

    def value(self, i: int) -> _Node:
        text = self.text
        ch = text[i]
        if ch == '"':
            _, end = json.decoder.scanstring(text, i + 1)
            return _Node(i, end)
        if ch == "{":
            node = _Node(i, i, keys=[], items=[])
            j = self.skip(i + 1)
            if text[j] == "}":
                node.end = j + 1
                return node
            while True:
                key, j = json.decoder.scanstring(text, j + 1)
                j = self.skip(j)
                j = self.skip(j + 1)  # ':'
                child = self.value(j)
                node.keys.append(key)
                node.items.append(child)
                j = self.skip(child.end)
                if text[j] == "}":
                    node.end = j + 1
                    return node
                j = self.skip(j + 1)  # ','
        if ch == "[":
            node = _Node(i, i, items=[])
            j = self.skip(i + 1)
            if text[j] == "]":
                node.end = j + 1
                return node
            while True:
                child = self.value(j)
                node.items.append(child)
                j = self.skip(child.end)
                if text[j] == "]":
                    node.end = j + 1
                    return node
                j = self.skip(j + 1)
        match = _SCALAR.match(text, i)
        if not match:
            raise ValueError(f"notebook JSON: unexpected {ch!r} at offset {i}")
        return _Node(i, match.end())

