"""`python -m prodmanager` is the `prodmanager` command."""

from prodmanager.cli import main

main()
