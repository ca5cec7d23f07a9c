"""`python -m cli` is `kb`."""

from cli.main import main

main()
