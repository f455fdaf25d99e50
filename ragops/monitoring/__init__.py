"""Monitoring: the Prometheus server that the prometheus analysis provider reads."""
