"""`python -m diagrammar`: the same command as the `diagrammar` console script."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
