"""``python -m adamml.cli COMMAND ...`` (e.g. under torchrun), the same as the `adamml` script."""

import sys

from adamml.cli.main import main

sys.exit(main())
