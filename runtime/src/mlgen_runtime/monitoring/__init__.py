"""Monitoring of the served model: Prometheus metrics, and drift of its inputs since training."""
