"""A fleet on one machine: N replicas of a config (`llama-ascend serve` on 127.0.0.1:8001...800N, each on its own
cores where the host has enough, or on an Ascend host its own tensor_parallel_size cards) behind vLLM's router (`llama-ascend router` on 127.0.0.1:8000): one
endpoint. `make fleet` runs it until Ctrl-C or SIGTERM, then stops the router and the replicas, each draining its
in-flight requests. The tests and `make bench-fleet` start the same fleet on free ports.

    python -m llama_ascend_dev.fleet --config config/dev-cpu.yaml --replicas 2
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from llama_ascend.config import load_config
from llama_ascend.errors import LlamaAscendError
from llama_ascend_dev.server_process import ServerProcess, free_port, wait_ready

READY_TIMEOUT = 1200.0  # a replica's cold start on a loaded 2-core machine


def core_sets(replicas: int, cpus: Sequence[int] | None = None) -> list[str] | None:
    """An even split of this process's cores, one range per replica ("0-1", "2-3"), or None when there are fewer
    cores than replicas (then the kernel schedules them)."""
    available = sorted(cpus if cpus is not None else os.sched_getaffinity(0))
    if replicas < 1 or len(available) < replicas:
        return None
    per = len(available) // replicas
    sets = []
    for i in range(replicas):
        chunk = available[i * per : (i + 1) * per]
        sets.append(f"{chunk[0]}-{chunk[-1]}" if len(chunk) > 1 else str(chunk[0]))
    return sets


@dataclass(frozen=True)
class Router:
    server: ServerProcess
    metrics_url: str


@dataclass
class Fleet:
    """Replicas and a router, started and stopped together. `sets` apply to every replica and the router."""

    config: Path
    replicas: int = 2
    router_port: int = 8000
    replica_ports: Sequence[int] = ()  # default: the ports after the router's (8001, 8002, ...)
    sets: Sequence[str] = ()
    router_sets: Sequence[str] = ()
    log_dir: Path = Path(".")
    api_key: str | None = None  # the clients' key: readiness checks send it
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    pin: bool = True
    servers: list[ServerProcess] = field(default_factory=list)
    router: ServerProcess | None = None
    router_metrics: str = ""  # the router's Prometheus /metrics URL, once it is started
    extra_routers: list[Router] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.replica_ports:
            self.replica_ports = [self.router_port + 1 + i for i in range(self.replicas)]
        if len(self.replica_ports) != self.replicas:
            raise ValueError(f"{self.replicas} replicas need {self.replicas} ports, got {list(self.replica_ports)}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.router_port}"

    def replica_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.replica_ports]

    def replica(self, index: int) -> ServerProcess:
        """A replica's server (not started): `llama-ascend serve` on its port, on its cores."""
        port = self.replica_ports[index]
        sets = [*self.sets, f"server.port={port}", "server.host=127.0.0.1"]
        config = load_config(self.config, self.sets)
        if config.backend == "ascend":  # its own cards: TP consecutive logical ids
            tp = config.server.tensor_parallel_size
            cards = ",".join(str(card) for card in range(index * tp, (index + 1) * tp))
            sets.append(f"env.ASCEND_RT_VISIBLE_DEVICES={cards}")
        elif (cores := core_sets(self.replicas) if self.pin else None) is not None:
            sets.append(f"env.VLLM_CPU_OMP_THREADS_BIND={cores[index]}")  # vLLM's CPU backend binds its threads here
        argv = [sys.executable, "-m", "llama_ascend", "serve", "--config", str(self.config)]
        for item in sets:
            argv += ["--set", item]
        log = self.log_dir / f"replica-{index}.log"
        return ServerProcess(f"replica {index}", argv, self.env, f"http://127.0.0.1:{port}", log)

    def router_process(self, port: int, sets: Sequence[str] = (), name: str = "router") -> Router:
        """A router (not started) on `port` in front of every replica: `llama-ascend router` with `sets`."""
        metrics_port = free_port()
        items = [
            *self.sets,
            *self.router_sets,
            *sets,
            "router.host=127.0.0.1",
            f"router.port={port}",
            "router.metrics_host=127.0.0.1",
            f"router.metrics_port={metrics_port}",
        ]
        argv = [sys.executable, "-m", "llama_ascend", "router", "--config", str(self.config)]
        for item in items:
            argv += ["--set", item]
        for url in self.replica_urls():
            argv += ["--worker-url", url]
        log = self.log_dir / f"{name.replace(' ', '-')}.log"
        server = ServerProcess(name, argv, self.env, f"http://127.0.0.1:{port}", log)
        return Router(server, f"http://127.0.0.1:{metrics_port}/metrics")

    def start_router(self, port: int, sets: Sequence[str] = (), name: str = "router", timeout: float = 300) -> Router:
        """Another router in front of the same replicas (another policy, say), started and answering."""
        router = self.router_process(port, sets, name)
        router.server.launch()
        try:
            self.wait(router.server, timeout)
        except BaseException:
            router.server.stop()
            raise
        self.extra_routers.append(router)
        return router

    def start(self, timeout: float = READY_TIMEOUT) -> None:
        """Start the replicas at once, then the router once they all answer; on any failure stop what runs."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.servers = [self.replica(i) for i in range(self.replicas)]
        try:
            for server in self.servers:
                server.launch()
            with ThreadPoolExecutor(max_workers=self.replicas) as pool:
                list(pool.map(lambda s: self.wait(s, timeout), self.servers))
            main = self.router_process(self.router_port)
            self.router, self.router_metrics = main.server, main.metrics_url
            self.router.launch()
            self.wait(self.router, timeout)
        except BaseException:
            self.stop()
            raise

    def wait(self, server: ServerProcess, timeout: float) -> float:
        process = server.process
        assert process is not None
        server.ready_s = wait_ready(
            server.url,
            alive=lambda: process.poll() is None,
            log_tail=server.log,
            timeout=timeout,
            api_key=self.api_key,
            name=server.name,
        )
        return server.ready_s

    def stop(self, timeout: float = 120) -> None:
        """SIGTERM the routers first (no new requests reach the replicas), then the replicas; each drains."""
        for router in [r.server for r in self.extra_routers] + ([self.router] if self.router else []):
            router.stop(timeout)
        with ThreadPoolExecutor(max_workers=max(1, len(self.servers))) as pool:
            list(pool.map(lambda s: s.stop(timeout), self.servers))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llama_ascend_dev.fleet", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--port", type=int, default=8000, help="the router's port; replicas take the next ones")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--log-dir", type=Path, default=Path("fleet-logs"))
    args = parser.parse_args(argv)
    if args.replicas < 1:
        parser.error("--replicas must be at least 1")
    fleet = Fleet(args.config, args.replicas, args.port, sets=args.sets, log_dir=args.log_dir)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"fleet: starting {args.replicas} replicas of {args.config} (logs in {args.log_dir})", file=sys.stderr)
    try:
        fleet.start()
    except LlamaAscendError as exc:  # a bad config, or a replica or the router that did not come up (the rest stopped)
        print(f"fleet: {exc}", file=sys.stderr)
        return exc.exit_code
    print(
        f"fleet: one endpoint {fleet.url} (replicas {', '.join(fleet.replica_urls())}); Ctrl-C stops all",
        file=sys.stderr,
        flush=True,
    )
    try:
        while not stop.wait(3600):
            pass
    finally:
        print("fleet: stopping the router, then the replicas (each drains its requests)", file=sys.stderr)
        fleet.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
