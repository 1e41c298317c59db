"""``python -m synergos_mlops`` is ``synmlops``."""

from synergos_mlops.cli import main

main()
