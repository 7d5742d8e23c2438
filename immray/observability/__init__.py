"""What operators watch: metrics on Ray's metrics export (:mod:`.metrics`) and structured logs through
structlog (:mod:`.logs`).

Kept apart from the services and the cores: those only call the few recording functions of ``metrics``
and bind log context with ``logs.bound``, so the pure parts never learn about Ray or structlog.
"""
