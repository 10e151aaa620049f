"""ams-exporter: a Prometheus exporter for Azure Media Services v2 encoding jobs."""

__version__ = "0.1.0"
