"""What the runner needs to know about a notebook before running it: its one `parameters` cell (literal
values only, so that papermill's injected values fully replace them) and a hash of its code."""
from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path

import nbformat


class NotebookError(ValueError):
    pass


def parameters_cells(nb) -> list[int]:
    return [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]


def literal_parameters(source: str, where: str = "parameters cell") -> dict:
    """{name: value} of a parameters cell; every statement must be `name = <literal>`."""
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        raise NotebookError(f"{where}: syntax error at line {err.lineno}: {err.msg}") from None
    values = {}
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else \
            node.target if isinstance(node, ast.AnnAssign) and node.value is not None else None
        if not isinstance(target, ast.Name):
            raise NotebookError(f"{where}, line {node.lineno}: only `name = literal` assignments are allowed "
                                "(move other code to the next cell)")
        try:
            values[target.id] = ast.literal_eval(node.value)
        except ValueError:
            raise NotebookError(f"{where}, line {node.lineno}: {target.id} is not a literal value "
                                "(papermill can only replace literals; compute it in the next cell)") from None
    return values


def read_parameters(path: str | Path) -> dict:
    """The defaults of the notebook's single `parameters` cell."""
    nb = nbformat.read(path, as_version=4)
    tagged = parameters_cells(nb)
    if len(tagged) != 1:
        raise NotebookError(f"{path}: {len(tagged)} cells tagged 'parameters' "
                            f"{'(cells ' + ', '.join(str(i + 1) for i in tagged) + ')' if tagged else ''}; "
                            "tag exactly one cell (Jupyter: View > Cell toolbar > Tags)")
    return literal_parameters(nb.cells[tagged[0]].source, f"{path}, cell {tagged[0] + 1} (parameters)")


def code_hash(path: str | Path) -> str:
    """sha256 of the code cells and the kernel: markdown, outputs and metadata edits do not count."""
    nb = nbformat.read(path, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    kernel = nb.metadata.get("kernelspec", {}).get("name")
    return hashlib.sha256(json.dumps([kernel, code]).encode()).hexdigest()


def source_cell_number(executed_nb, cell_index: int) -> int:
    """1-based position in the notebook as written of the executed notebook's cell `cell_index`
    (papermill inserts an 'injected-parameters' cell, which shifts the later ones by one)."""
    injected = [i for i, c in enumerate(executed_nb.cells)
                if "injected-parameters" in c.get("metadata", {}).get("tags", [])]
    return cell_index + 1 - sum(1 for i in injected if i < cell_index)
