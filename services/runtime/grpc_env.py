"""gRPC core settings, which gRPC reads from the environment once, when `grpc` is first imported.

Call `configure_grpc_core()` before anything imports `grpc` (the `earpiece` command, the test
suite and the benchmarks do, first thing). A value already in the environment is kept.

- GRPC_ENABLE_FORK_SUPPORT=false: the embedded servers are started and stopped as subprocesses
  while gRPC threads run; gRPC's fork handlers only print a warning about it.
- GRPC_EXPERIMENTS=-event_engine_listener: the gateway carries many small messages on
  long-lived streams (a 20 ms audio frame each way per session). Connections accepted by gRPC's
  EventEngine listener are read on EventEngine threads, each read then handed to the completion
  queue's poller thread; without that experiment the server's connections are iomgr endpoints,
  read on the polling thread itself: a thread hop fewer per message. It changes servers only
  (client channels, the tests' included, keep their endpoints). A bare grpc.aio stream server
  at 25 streams of 50 messages a second in and 15 out took 0.70 -> 0.52% of a core per stream
  on this project's 2-core machine; the gateway's own before/after is in the README's load
  section. iomgr endpoints were gRPC's default before the experiment; the suite runs with it.
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)

GRPC_CORE_DEFAULTS = {
    "GRPC_ENABLE_FORK_SUPPORT": "false",
    "GRPC_EXPERIMENTS": "-event_engine_listener",
}


def configure_grpc_core() -> None:
    """Puts GRPC_CORE_DEFAULTS in the environment (each unless already set)."""
    if "grpc" in sys.modules:
        log.warning("grpc was imported before its settings were made; they may not apply")
    for name, value in GRPC_CORE_DEFAULTS.items():
        os.environ.setdefault(name, value)
