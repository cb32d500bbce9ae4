"""``python -m emcs``: the same as the ``emcs`` command (for a checkout on PYTHONPATH without an install)."""

from emcs.cli import main

if __name__ == "__main__":
    main()
