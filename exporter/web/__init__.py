"""The exporter's own HTTP side: the server, the /metrics app, the status page and the web config."""
