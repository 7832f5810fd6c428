"""`python -m detectors.training`: the same sub-commands as `citywatch model`."""

import sys

from detectors.training.cli import main

if __name__ == "__main__":
    sys.exit(main())
