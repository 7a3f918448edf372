"""Benchmarks that print figures: the emulator's own (lab_bench.py, `python -m lab bench`), the
data plane's API-write -> kernel latency (latency.py), failovers of the pair (failover_bench.py)."""
