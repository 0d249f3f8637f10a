"""python -m benchmarks.load [--quick] [--sessions N ...] [--seconds S]"""

from benchmarks.load.driver import cli

cli()
