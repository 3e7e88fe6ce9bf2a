"""Prometheus metrics for the daemons (jobs seen/committed/disputed, moves, gas, bonds at stake).

Each daemon gets its own registry so tests can run several in one process.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server


class NodeMetrics:
    def __init__(self, role: str) -> None:
        self.registry = CollectorRegistry()
        labels = {"registry": self.registry}
        self.jobs_seen = Counter("judge_jobs_seen", "Jobs observed on-chain", ["role"], **labels)
        self.jobs_committed = Counter("judge_jobs_committed", "Results committed", ["role"],
                                      **labels)
        self.jobs_disputed = Counter("judge_jobs_disputed", "Disputes opened or answered",
                                     ["role"], **labels)
        self.game_moves = Counter("judge_game_moves", "Dispute-game moves sent", ["role"],
                                  **labels)
        self.gas_spent = Counter("judge_gas_spent", "Gas used by our transactions", ["role"],
                                 **labels)
        self.bonds_at_stake = Gauge("judge_bonds_at_stake_wei", "Our bonds currently locked",
                                    ["role"], **labels)
        self.role = role
        self._server = None

    def serve(self, port: int) -> int:
        """Expose /metrics on 127.0.0.1:port (0 = off). Returns the port."""
        if port:
            self._server, _thread = start_http_server(port, addr="127.0.0.1",
                                                      registry=self.registry)
        return port

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def tx(self, gas_used: int) -> None:
        self.gas_spent.labels(self.role).inc(gas_used)
