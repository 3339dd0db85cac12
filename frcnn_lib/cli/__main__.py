"""``python -m frcnn_lib.cli``: the command line, with the eager ``import frcnn_lib``."""
import sys

from frcnn_lib.cli import main

sys.exit(main())
