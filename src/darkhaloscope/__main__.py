"""`python -m darkhaloscope` == `dhs`."""

import sys

from darkhaloscope.cli import main

sys.exit(main())
