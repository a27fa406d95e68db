"""What every notebooks/src/make_NN.py shares: the kernel metadata and how a generated notebook is written
(validated, then saved with no outputs)."""
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[2]
KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}


def write_notebook(nb, relative_path: str) -> Path:
    path = REPO / relative_path
    nbformat.validate(nb)
    nbformat.write(nb, path)
    print(f"wrote {path}")
    return path
