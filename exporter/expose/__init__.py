"""Turn a collection into metrics: the metric contract, the fast writer and the prometheus_client reference path."""
