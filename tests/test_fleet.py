"""A fleet of real processes: two vLLM CPU replicas of the stand-in behind the real vLLM router (`llama-ascend
router`), on loopback. Every wait is for an event (a counter, a health flag, a stream chunk), with a hang guard."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import pytest

from conftest import DEV_CONFIG, metric_samples, metric_total
from llama_ascend_dev.fleet import Fleet, Router
from llama_ascend_dev.server_process import free_consecutive_ports, free_port, free_ports

pytestmark = pytest.mark.e2e
MODEL = "SmolLM2-135M-Instruct"
KEY_ENV = "LLAMA_FLEET_TEST_KEY"
HANG_GUARD = 300.0


def replica_total(fleet: Fleet, index: int, name: str) -> float:
    """A counter of one replica (summed over its labels), from its own /metrics."""
    return metric_total(f"{fleet.replica_urls()[index]}/metrics", name)


def worker_health(router: Router, worker: str) -> float | None:
    found = metric_samples(router.metrics_url)
    return found.get(("vllm_router_worker_health", (("worker", worker),)))


def until(predicate, what: str, timeout: float = HANG_GUARD, interval: float = 0.2) -> float:
    """Poll `predicate` until it holds; the seconds it took. The timeout only guards against a hang."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not after {timeout:.0f} s")
        time.sleep(interval)
    return time.monotonic() - started


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    key = "fleet-" + os.urandom(4).hex()
    router_port, *replica_ports = free_ports(3)
    fleet = Fleet(
        DEV_CONFIG,
        replicas=2,
        router_port=router_port,
        replica_ports=replica_ports,
        sets=[f"server.api_key_env={KEY_ENV}", "server.shutdown_timeout=120"],
        router_sets=["router.health_check_interval=1", "router.health_failure_threshold=2"],
        log_dir=tmp_path_factory.mktemp("fleet"),
        api_key=key,
        env={**os.environ, KEY_ENV: key},
    )
    fleet.start()
    try:
        yield fleet
    finally:
        fleet.stop()


@pytest.fixture(scope="module")
def round_robin(fleet: Fleet) -> Router:
    return fleet.start_router(free_port(), ["router.policy=round_robin"], name="round-robin router")


def headers(fleet: Fleet) -> dict[str, str]:
    return {"Authorization": f"Bearer {fleet.api_key}"}


def complete(url: str, fleet: Fleet, prompt: str, max_tokens: int = 8) -> httpx.Response:
    body = {"model": MODEL, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
    return httpx.post(f"{url}/v1/completions", json=body, headers=headers(fleet), timeout=120)


@dataclass
class Stream:
    """A streamed completion read in a thread: each `data:` payload and when it arrived."""

    url: str
    body: dict[str, object]
    headers: dict[str, str] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    first: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> None:
        """Returns once the first event has arrived (the request is in flight)."""
        self.thread = threading.Thread(target=self._read)
        self.thread.start()
        assert self.first.wait(HANG_GUARD), f"no event from {self.url}"

    def _read(self) -> None:
        with httpx.stream("POST", self.url, json=self.body, headers=self.headers, timeout=300) as response:
            for line in response.iter_lines():
                if line.startswith("data:"):
                    self.arrivals.append(time.monotonic())
                    self.events.append(line[5:].strip())
                    self.first.set()

    def join(self) -> None:
        assert self.thread is not None, "start() first"
        self.thread.join(HANG_GUARD)

    def arrived_after(self, moment: float) -> int:
        return sum(at > moment for at in self.arrivals)


def test_requests_spread_over_both_replicas(fleet: Fleet, round_robin: Router) -> None:
    before = [replica_total(fleet, i, "vllm:request_success_total") for i in range(2)]
    for i in range(6):
        assert complete(round_robin.server.url, fleet, f"Fact {i}: the sky is").status_code == 200
    after = [replica_total(fleet, i, "vllm:request_success_total") for i in range(2)]
    assert [a - b for a, b in zip(after, before, strict=True)] == [3, 3]


def test_cache_aware_keeps_a_conversation_on_one_replica(fleet: Fleet) -> None:
    system = "You are a careful assistant for a shipping company. " * 12  # a long shared prefix
    hits_before = [replica_total(fleet, i, "vllm:prefix_cache_hits_total") for i in range(2)]
    done_before = [replica_total(fleet, i, "vllm:request_success_total") for i in range(2)]
    messages = [{"role": "system", "content": system}]
    for turn in range(4):
        messages.append({"role": "user", "content": f"Question {turn}: where is parcel {turn}?"})
        body = {"model": MODEL, "messages": messages, "max_tokens": 8, "temperature": 0}
        reply = httpx.post(f"{fleet.url}/v1/chat/completions", json=body, headers=headers(fleet), timeout=120)
        assert reply.status_code == 200, reply.text
        messages.append({"role": "assistant", "content": reply.json()["choices"][0]["message"]["content"]})
    served = [replica_total(fleet, i, "vllm:request_success_total") - done_before[i] for i in range(2)]
    hits = [replica_total(fleet, i, "vllm:prefix_cache_hits_total") - hits_before[i] for i in range(2)]
    home = served.index(4)  # every turn on one replica ...
    assert served[1 - home] == 0
    assert hits[home] > 0 and hits[1 - home] == 0  # ... which reused the conversation's prefix


def test_streaming_chat_through_the_router_with_the_openai_client_and_the_key(fleet: Fleet) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{fleet.url}/v1", api_key=fleet.api_key, max_retries=0)
    chunks = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=16,
        temperature=0,
        stream=True,
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    anonymous = openai.OpenAI(base_url=f"{fleet.url}/v1", api_key="wrong-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError):  # 401 from the replica, passed through by the router
        anonymous.models.list()
    assert httpx.get(f"{fleet.url}/v1/models", timeout=30).status_code == 401


@dataclass
class Outcome:
    started: float
    ended: float
    status: int | None
    error: str = ""


def serves_replica_1(router: Router, fleet: Fleet) -> bool:
    """One request through the router; whether replica 1 answered it."""
    before = replica_total(fleet, 1, "vllm:request_success_total")
    assert complete(router.server.url, fleet, "Again: one, two,").status_code == 200
    return replica_total(fleet, 1, "vllm:request_success_total") > before


def test_a_killed_replica_is_routed_around_and_rejoins(fleet: Fleet, round_robin: Router) -> None:
    """SIGKILL replica 1 under load: once the router has noticed, no request fails; restarted, it serves again."""
    outcomes: list[Outcome] = []
    stop = threading.Event()
    lock = threading.Lock()

    def load() -> None:
        i = 0
        while not stop.is_set():
            started = time.monotonic()
            try:
                status = complete(round_robin.server.url, fleet, f"Load {i}: one, two,", max_tokens=16).status_code
                outcome = Outcome(started, time.monotonic(), status)
            except httpx.HTTPError as exc:
                outcome = Outcome(started, time.monotonic(), None, type(exc).__name__)
            with lock:
                outcomes.append(outcome)
            i += 1

    victim = fleet.servers[1]
    worker = fleet.replica_urls()[1]
    served_before = replica_total(fleet, 1, "vllm:request_success_total")
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = [pool.submit(load) for _ in range(3)]
        try:
            until(lambda: replica_total(fleet, 1, "vllm:request_success_total") > served_before, "replica 1 serving")
            assert victim.process is not None
            killed_at = time.monotonic()
            os.killpg(victim.process.pid, signal.SIGKILL)
            victim.process.wait()
            detection = until(lambda: worker_health(round_robin, worker) == 0.0, "the router marks replica 1 down")
            noticed_at = killed_at + detection
            with lock:
                seen = len(outcomes)
            until(lambda: len(outcomes) >= seen + 12, "12 more requests after detection")
        finally:
            stop.set()
            for future in futures:
                future.result()
    after = [o for o in outcomes if o.started > noticed_at]
    lost = [o for o in outcomes if o.started < killed_at < o.ended and o.status != 200]
    between = [o for o in outcomes if killed_at <= o.started <= noticed_at and o.status != 200]
    print(f"failover: detected {detection:.1f} s after SIGKILL; {len(lost)} in-flight lost, {len(between)} failed "
          f"before detection, {sum(o.status != 200 for o in after)} of {len(after)} failed after it")  # fmt: skip
    assert after and all(o.status == 200 for o in after), [o for o in after if o.status != 200]

    victim.launch()  # the same port: the router's health checks find it again
    fleet.wait(victim, HANG_GUARD * 4)
    until(lambda: worker_health(round_robin, worker) == 1.0, "the router puts replica 1 back")
    # Healthy again, but the requests that failed on it opened its circuit breaker: the router sends to it again once
    # router.cb_timeout (30 s) has passed, whether the restart took 5 s or 50.
    until(lambda: serves_replica_1(round_robin, fleet), "round robin sends to replica 1 again", HANG_GUARD)
    served = replica_total(fleet, 1, "vllm:request_success_total")
    for i in range(4):
        assert complete(round_robin.server.url, fleet, f"Back {i}: one, two,").status_code == 200
    assert replica_total(fleet, 1, "vllm:request_success_total") - served == 2  # half of round robin's share


def test_sigterm_to_the_router_lets_in_flight_requests_finish(fleet: Fleet) -> None:
    router = fleet.start_router(free_port(), name="draining router")
    body = {"model": MODEL, "prompt": "Count:", "max_tokens": 64, "stream": True, "ignore_eos": True}
    stream = Stream(f"{router.server.url}/v1/completions", body, headers(fleet))
    stream.start()
    assert router.server.process is not None
    sent = time.monotonic()
    os.killpg(router.server.process.pid, signal.SIGTERM)
    stream.join()
    assert router.server.process.wait(HANG_GUARD) == 0
    fleet.extra_routers.remove(router)
    assert stream.events[-1] == "[DONE]"
    assert stream.arrived_after(sent) > 32  # most of the tokens came after SIGTERM


def test_make_fleet_stops_everything_on_sigterm_after_the_requests_in_flight(tmp_path) -> None:
    """`python -m llama_ascend_dev.fleet` (what `make fleet` runs): one endpoint; SIGTERM (as Ctrl-C) stops the router
    and the replicas, and a request in flight still completes."""
    import subprocess
    import sys

    port = free_consecutive_ports(2)  # the router's, then the replica's (the fleet's own layout)
    log = tmp_path / "fleet.log"
    argv = [sys.executable, "-m", "llama_ascend_dev.fleet", "--config", str(DEV_CONFIG), "--replicas", "1",
            "--port", str(port), "--log-dir", str(tmp_path / "logs")]  # fmt: skip
    with log.open("wb") as out:
        fleet = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        until(lambda: "one endpoint" in log.read_text() or fleet.poll() is not None, "the fleet is up", HANG_GUARD * 4)
        assert fleet.poll() is None, log.read_text()
        body = {"model": MODEL, "prompt": "Count:", "max_tokens": 48, "stream": True, "ignore_eos": True}
        stream = Stream(f"http://127.0.0.1:{port}/v1/completions", body)
        stream.start()
        sent = time.monotonic()
        fleet.send_signal(signal.SIGTERM)
        stream.join()
        assert fleet.wait(HANG_GUARD) == 0, log.read_text()
    finally:
        if fleet.poll() is None:
            os.killpg(fleet.pid, signal.SIGKILL)
    assert stream.events[-1] == "[DONE]" and stream.arrived_after(sent) > 24
    assert "stopping the router, then the replicas" in log.read_text()
    with pytest.raises(httpx.ConnectError):  # nothing is left listening
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
