"""``python -m gapbench`` is the ``gapbench`` command (for environments without the console script)."""

from .cli import main

main()
