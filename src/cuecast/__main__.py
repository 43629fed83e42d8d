"""`python -m cuecast` is the `cuecast` command."""

import sys

from cuecast.cli.main import main

sys.exit(main())
