"""The tutorial notebooks: saved in a checkable state, and nbval really checks them.

`make test` runs the notebooks themselves with nbval in the tf1-ema kernel;
these tests pin what makes that run meaningful: every notebook is a clean,
top-to-bottom run of the tf1-ema kernel whose checked outputs are free of
machine-specific text, and a changed number makes nbval fail.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbval.plugin import get_sanitize_patterns

from limits import TIMEOUT
from tf1_ema import kernelspec

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
TUTORIALS = [
    "01_walkthrough",
    "02_decay_and_bias",
    "03_training_with_ema",
    "04_checkpoints",
    "05_devices_and_speed",
    "06_then_and_now",
]
IGNORE_MARKER = "# NBVAL_IGNORE_OUTPUT"


def _sanitize_patterns():
    with open(kernelspec.SANITIZE_FILE, encoding="ascii") as f:
        return get_sanitize_patterns(f.read())


def _sanitize(text: str) -> str:
    for regex, replacement in _sanitize_patterns():
        text = re.sub(regex, replacement, text)
    return text


def _output_texts(output) -> list:
    if output["output_type"] == "stream":
        return [output["text"]]
    data = output.get("data", {})
    return [data[key] for key in ("text/plain", "text/html", "text/markdown") if key in data]


def test_the_tutorials_are_all_there():
    """notebooks/ holds the six tutorials, each named NN_topic.ipynb."""
    names = [path.stem for path in NOTEBOOKS]
    assert set(TUTORIALS) <= set(names)
    assert all(re.fullmatch(r"\d\d_[a-z0-9_]+", name) for name in names), names


@pytest.fixture(params=NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def notebook(request):
    """One saved notebook from notebooks/, read with nbformat."""
    return nbformat.read(str(request.param), as_version=4)


def test_notebook_is_validated_and_uses_the_tf1_kernel(notebook):
    """The notebook is valid nbformat and names the tf1-ema kernel, so nbval and Jupyter pick it."""
    nbformat.validate(notebook)
    assert notebook.metadata["kernelspec"]["name"] == kernelspec.KERNEL_NAME
    assert notebook.metadata["kernelspec"]["display_name"] == kernelspec.DISPLAY_NAME


def test_notebook_is_one_clean_top_to_bottom_run(notebook):
    """Every code cell was executed once, in order, with no error output."""
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1))
    for cell in code:
        assert all(output["output_type"] != "error" for output in cell.outputs), cell.source


def test_notebook_has_no_stderr_and_no_svg(notebook):
    """No saved output is a stderr stream or an SVG image (plots are PNG)."""
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            assert output.get("name") != "stderr", (cell.source, output)
            assert "image/svg+xml" not in output.get("data", {}), cell.source


def test_checked_outputs_need_no_sanitizing(notebook):
    """Outputs nbval compares hold no device names, addresses, temp paths or timings at all."""
    for cell in notebook.cells:
        if cell.cell_type != "code" or cell.source.startswith(IGNORE_MARKER):
            continue
        for output in cell.outputs:
            for text in _output_texts(output):
                assert _sanitize(text) == text, (cell.source, text)


def test_notebook_teaches_in_prose(notebook):
    """The notebook opens with a titled markdown cell and has prose between its code cells."""
    first = notebook.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    markdown = sum(cell.cell_type == "markdown" for cell in notebook.cells)
    code = sum(cell.cell_type == "code" for cell in notebook.cells)
    assert markdown * 2 >= code


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<Op object at 0x7f3a2b1c4d50>", "<Op object at 0xADDRESS>"),
        ("/job:localhost/replica:0/task:0/device:GPU:0 ran 30 EMA ops", "/device:DEVICE ran 30 EMA ops"),
        ("placed on /device:CPU:0", "placed on /device:DEVICE"),
        ("saved /tmp/tmpa1b2c3/model.ckpt-300", "saved TMPPATH"),
        ("1.06 ms ± 12.3 µs per loop (mean ± std. dev. of 7 runs, 1,000 loops each)", "TIMEIT"),
        ("CPU times: user 3 ms, sys: 0 ns, total: 3 ms\nWall time: 2.5 ms\n", "CPU times: TIME\nWall time: TIME\n"),
        ("[3.0, 2.7029998]", "[3.0, 2.7029998]"),
        ("step 0x10, value 1e-06", "step 0x10, value 1e-06"),
    ],
    ids=["address", "full-device", "short-device", "temp-path", "timeit", "time", "numbers", "short-hex"],
)
def test_sanitize_file_masks_machine_details_but_never_values(text, expected):
    """The shipped sanitize file masks addresses, devices, temp paths and timings, and leaves values alone."""
    assert _sanitize(text) == expected


# (notebook, a line one of its checked stream outputs holds, the same line with a number changed,
# the stored and the changed number as nbval's report shows them)
_CHANGED_NUMBERS = [
    ("01_walkthrough", "[3.0, 2.7029998]\n", "[3.0, 2.7029997]\n", ("2.7029998", "2.7029997")),
    # NumPy 2's own text for the same array: the era-faithful line must be the one checked.
    (
        "06_then_and_now", "[ 0.33333334  0.66666669  1.        ]\n", "[ 0.33333334  0.6666667   1.        ]\n",
        ("0.66666669", "0.6666667 "),
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize("stem, stored, changed, numbers", _CHANGED_NUMBERS, ids=[row[0] for row in _CHANGED_NUMBERS])
def test_nbval_fails_a_notebook_whose_stored_number_changed(tmp_path, stem, stored, changed, numbers):
    """nbval in the tf1-ema kernel fails exactly the cell of a copied notebook whose stored line was edited."""
    nb = nbformat.read(str(NOTEBOOK_DIR / (stem + ".ipynb")), as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    hits = [
        (index, output) for index, cell in enumerate(code)
        for output in cell.outputs
        if output["output_type"] == "stream" and stored in output["text"].splitlines(keepends=True)
    ]
    assert len(hits) == 1
    index, output = hits[0]
    output["text"] = output["text"].replace(stored, changed)
    copy = tmp_path / (stem + "_changed.ipynb")
    nbformat.write(nb, str(copy))
    # Run from tmp_path so that this repository's configuration stays out of it.
    proc = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rf",
            "--nbval", "--nbval-kernel-name", kernelspec.KERNEL_NAME,
            "--nbval-sanitize-with", kernelspec.SANITIZE_FILE,
            copy.name,
        ],
        cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT,
    )
    report = proc.stdout + proc.stderr
    assert proc.returncode == 1, report
    assert "1 failed, %d passed" % (len(code) - 1) in report, report
    # nbval names the failing cell by its index among code cells.
    assert re.search(r"^FAILED \S*::Cell %d " % index, report, re.MULTILINE), report
    assert all(number in report for number in numbers), report
