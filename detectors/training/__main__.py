import sys

from detectors.training.cli import main

sys.exit(main())
