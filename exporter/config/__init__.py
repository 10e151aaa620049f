"""The exporter's configuration: reading, validating and describing it."""
