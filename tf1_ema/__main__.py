"""``python -m tf1_ema ...`` is ``tf1-ema ...``."""

import sys

from tf1_ema.cli import main

if __name__ == "__main__":
    sys.exit(main())
