from pathlib import Path

from gapbench.catalogue import render


def test_readme_catalogue_matches_the_registries():
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert readme == render(readme), "README catalogue is stale: run python -m gapbench.catalogue --write README.md"
