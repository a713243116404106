"""The README's "From Python" snippet runs verbatim, and its held-out numbers are on points it never trained on."""

import contextlib
import io
import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def from_python_snippet() -> str:
    """The first ```python block after the line 'From Python:'."""
    text = README.read_text()
    match = re.search(r"^From Python:\s*\n+```python\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    assert match, "README.md has no ```python block under 'From Python:'"
    return match.group(1)


def test_from_python_snippet_runs_verbatim(mnist):     # the fixture skips without $GAPBENCH_DATA/mnist
    namespace: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(from_python_snippet(), str(README), "exec"), namespace)
    printed = out.getvalue()
    assert "held-out points: checked: disjoint from the 1000 training points" in printed
    data, run = namespace["data"], namespace["run"]
    assert len(data.val) == 2000 and len(run.train_indices) == 1000
    assert not torch.isin(data.val.indices, run.train_indices).any()     # the snippet's val is held out
    assert data.val.pool == data.train.pool == "mnist:train"
    err = float(re.search(r"empirical error = ([0-9.]+)", printed).group(1))
    assert 0 < err < 0.2       # a 784-100-10 MLP trained on 1,000 MNIST digits errs on roughly 10 % of held-out digits
