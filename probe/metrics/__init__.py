"""Prometheus metrics: what the probes saw, rendered from memory, served over HTTP.

metrics = Metrics()
metrics.set_pairs((v.name, t.name) for v in config.vantages for t in config.targets)
server = await serve_metrics(metrics, *config.metrics.host_port)
...
metrics.observe(result)
...
await server.close()
"""

from probe.metrics.collector import Metrics
from probe.metrics.families import failure_label
from probe.metrics.server import MetricsServer, serve_metrics

__all__ = ["Metrics", "MetricsServer", "failure_label", "serve_metrics"]
