"""Benchmarks of the exporter against the emulator; not part of the test suite's pass/fail."""
