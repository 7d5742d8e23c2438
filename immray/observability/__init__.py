"""What operators watch: Prometheus metrics (:mod:`.metrics`) and structured logs (:mod:`.logs`).

Kept apart from the services and the cores: those only call the few recording functions of ``metrics``,
so the pure parts never learn about Prometheus.
"""
