"""examples/notebook.ipynb runs top to bottom without an error, and shows its table and chart."""

import pathlib

import nbformat
from nbclient import NotebookClient

NOTEBOOK = pathlib.Path(__file__).resolve().parents[2] / "examples" / "notebook.ipynb"


def test_notebook_executes():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # Raises CellExecutionError on the first failing cell.
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    assert "<table>" in html and "dermatologist's label" in html
    assert any("image/png" in o.get("data", {}) for o in outputs), "the bar chart is drawn"
    text = "".join(o.get("text", "") for o in outputs)
    assert "Unknown not_dermoscopy" in text, "the photo is refused as not dermoscopy"
    assert "does not look like a dermoscopic image" in html
    assert "Heatmap: evidence for" in html, "an explanation is shown"
    assert "heatmap (" in text and "class map (6, 6)" in text
