"""Markdown tables of every registered measure, bound and experiment, for the README.

`python -m gapbench.catalogue --write README.md` regenerates the block between the markers; a test checks
that the README matches the registries, so the documentation cannot drift from the code.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .bounds import list_bounds
from .experiments import EXPERIMENTS
from .measures import list_measures

BEGIN, END = "<!-- catalogue:begin -->", "<!-- catalogue:end -->"


def _row(*cells: str) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"


def tables() -> str:
    lines = ["### Experiments", "", _row("name", "paper, figure", "presets"), _row("---", "---", "---")]
    lines += [_row(f"`{e.name}`", f"{e.obj.paper}, {e.obj.figure}", ", ".join(e.obj.presets)) for e in EXPERIMENTS]
    lines += ["", "### Measures (compared by rank or slope; never bounds)", "",
              _row("name", "kind", "needs", "reference"), _row("---", "---", "---", "---")]
    for e in list_measures():
        needs = ", ".join(n for n, flag in (("data", e.meta["needs_data"]), ("init", e.meta["needs_init"])) if flag)
        lines.append(_row(f"`{e.name}`", e.meta["kind"], needs or "-", e.meta["reference"]))
    lines += ["", "### Bounds (valid with probability ≥ 1 − δ, every constant included)", "",
              _row("name", "bounds", "reference"), _row("---", "---", "---")]
    lines += [_row(f"`{e.name}`", e.meta["quantity"], e.meta["reference"]) for e in list_bounds()]
    return "\n".join(lines)


def render(readme: str) -> str:
    """`readme` with the catalogue block replaced by freshly generated tables."""
    head, _, rest = readme.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{tables()}\n{END}{tail}"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--write":
        path = Path(sys.argv[2])
        path.write_text(render(path.read_text()))
    else:
        print(tables())
