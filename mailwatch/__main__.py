"""``python -m mailwatch``: the same as the ``mailwatch`` command."""

from mailwatch.cli import main

main()
