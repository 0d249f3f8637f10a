"""`python -m services.realtime.simulator`: the simulator on its own."""

import sys

from services.realtime.simulator.cli import main

sys.exit(main())
