"""`python -m cuecast` is the `cuecast` command."""

import sys

from cuecast.cli import main

sys.exit(main())
