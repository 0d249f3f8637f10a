"""Benchmarks, run by `make bench` (`python -m benchmarks`); never part of `make test`.

Each `bench_*.py` module has an `async def main() -> None` that prints its own results. They
measure ratios within one run (the store against raw COPY on the same server, same moment),
because absolute numbers vary from machine to machine and minute to minute."""
