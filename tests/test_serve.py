import json
import signal
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from conftest import DEV_CONFIG, PROD_CONFIG, cli
from llama_ascend.config import load_config
from llama_ascend.errors import ConfigError
from llama_ascend.render import render
from llama_ascend.serve import server_environment
from llama_ascend.server_process import free_port


def test_secrets_resolve_by_name_at_serve_time():
    launch = render(load_config(PROD_CONFIG, ["server.api_key_env=MY_KEY"], environ={}))
    env = server_environment(launch, {"MY_KEY": "s3cret", "PATH": "/bin"})
    assert env["VLLM_API_KEY"] == "s3cret" and env["PATH"] == "/bin" and env["HF_HUB_OFFLINE"] == "1"
    with pytest.raises(ConfigError, match=r"server.api_key_env names \$MY_KEY, but it is unset"):
        server_environment(launch, {})


def test_serve_without_weights_exits_2(tmp_path):
    result = cli("serve", "--dry-run", "--config", str(DEV_CONFIG), "--set", f"model.path={tmp_path}")
    assert result.returncode == 2
    assert f"model.path: {tmp_path} is not a usable model dir: config.json is missing" in result.stderr


def test_serve_on_a_node_without_npu_exits_3_listing_every_failure(standin_model_dir):
    result = cli(
        "serve",
        "--dry-run",
        "--config",
        str(PROD_CONFIG),
        "--set",
        "model.source=local",
        "--set",
        f"model.path={standin_model_dir}",
    )
    assert result.returncode == 3, result.stderr
    assert "/dev/davinci_manager is missing" in result.stderr and "libascend_hal.so is missing" in result.stderr
    assert "vllm.entrypoints" not in result.stdout


def test_serve_dry_run_prints_the_command_and_makes_cache_dirs(standin_model_dir, tmp_path):
    result = cli(
        "serve",
        "--dry-run",
        "--config",
        str(DEV_CONFIG),
        "--set",
        f"server.cache_dir={tmp_path}/c",
        "--set",
        f"server.port={free_port()}",
    )
    assert result.returncode == 0, result.stderr
    assert "vllm.entrypoints.openai.api_server" in result.stdout and str(standin_model_dir) in result.stdout
    assert all((tmp_path / "c" / d).is_dir() for d in ("vllm", "inductor", "triton", "tmp"))


@pytest.mark.e2e
def test_dev_server_is_vllm_in_our_pid(dev_server):
    """serve exec'd vLLM: the process we started is the API server with exactly the rendered argv and environment,
    no wrapper in between (what `make bench` compares against a raw start)."""
    launch = render(load_config(DEV_CONFIG, dev_server.sets), python=sys.executable)
    cmdline = Path(f"/proc/{dev_server.process.pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    assert cmdline == launch.argv
    environ = dict(
        item.split("=", 1) for item in Path(f"/proc/{dev_server.process.pid}/environ").read_text().split("\0") if item
    )
    assert launch.env.items() <= environ.items()
    assert environ["VLLM_API_KEY"] == dev_server.api_key
    assert b"CPU STAND-IN" in dev_server.log_path.read_bytes()


@pytest.mark.e2e
@pytest.mark.stops_server
def test_sigterm_drains_in_flight_request_and_exits(dev_server):
    """SIGTERM while a request streams: the request completes, then the server exits cleanly within the drain."""
    body = {
        "model": dev_server.model,
        "prompt": "Count from one to one hundred:",
        "max_tokens": 64,
        "temperature": 0,
        "stream": True,
        "ignore_eos": True,
    }
    events: list[str] = []
    headers = {"Authorization": f"Bearer {dev_server.api_key}"}

    def stream() -> None:
        with httpx.stream("POST", f"{dev_server.url}/v1/completions", json=body, headers=headers, timeout=300) as r:
            events.extend(line[5:].strip() for line in r.iter_lines() if line.startswith("data:"))

    client = threading.Thread(target=stream)
    client.start()
    deadline = time.monotonic() + 60
    while not events and time.monotonic() < deadline:
        time.sleep(0.2)
    sent = time.monotonic()
    dev_server.process.send_signal(signal.SIGTERM)
    client.join(timeout=300)
    returncode = dev_server.process.wait(timeout=300)  # timely: the fixture's shutdown_timeout plus teardown
    exited_after = time.monotonic() - sent
    assert events and events[-1] == "[DONE]", dev_server.log()[-3000:]
    chunks = [json.loads(e) for e in events[:-1]]
    assert all("choices" in c for c in chunks), [c for c in chunks if "choices" not in c]
    tokens = sum(bool(c["choices"] and c["choices"][0]["text"]) for c in chunks)
    assert tokens > 60  # the request ran to its end after SIGTERM
    assert returncode == 0, dev_server.log()[-3000:]
    print(f"drained and exited {exited_after:.1f} s after SIGTERM")
