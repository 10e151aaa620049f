"""Helpers shared by the tests: emulator wiring, processes, PKI, Prometheus, oracles."""
