"""``python -m digitkit`` is the ``digitkit`` command."""

from digitkit.cli import main

if __name__ == "__main__":
    main()
