import json

import pytest

from conftest import cli
from llama_ascend_dev.server_process import free_port


@pytest.mark.e2e
def test_smoke_passes_against_the_dev_server(dev_server):
    result = cli("smoke", "--url", dev_server.url, "--api-key", dev_server.api_key, "--json", timeout=600)
    report = json.loads(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    checks = {c["name"]: c for c in report["checks"]}
    assert set(checks) == {"models", "chat: capital", "chat: introduce", "chat: python", "completion", "chat: stream"}
    assert all(c["passed"] for c in checks.values())
    assert "Paris" in checks["chat: capital"]["detail"]
    print(checks["chat: capital"]["detail"])


@pytest.mark.e2e
def test_smoke_table_names_the_model(dev_server):
    result = cli(
        "smoke", "--url", dev_server.url, "--api-key", dev_server.api_key, "--model", dev_server.model, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS" in result.stdout and "FAIL" not in result.stdout and dev_server.model in result.stdout


@pytest.mark.e2e
def test_smoke_without_key_gets_401_and_exits_1(dev_server):
    result = cli("smoke", "--url", dev_server.url, env={"LLAMA_ASCEND_API_KEY": ""})
    assert result.returncode == 1
    assert "401 Unauthorized: the server needs an API key" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.e2e
def test_smoke_wrong_model_exits_1(dev_server):
    result = cli("smoke", "--url", dev_server.url, "--api-key", dev_server.api_key, "--model", "Llama-3.1-8B-Instruct")
    assert result.returncode == 1
    assert "model 'Llama-3.1-8B-Instruct' is not served; /v1/models lists ['SmolLM2-135M-Instruct']" in result.stderr


def test_smoke_unreachable_server_exits_1():
    url = f"http://127.0.0.1:{free_port()}"
    result = cli("smoke", "--url", url)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {url}: server unreachable") and len(result.stderr.splitlines()) == 1
