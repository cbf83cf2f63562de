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
from llama_ascend.launch import environment
from llama_ascend.render import render
from llama_ascend_dev.server_process import free_port


def test_secrets_resolve_by_name_at_serve_time():
    launch = render(load_config(PROD_CONFIG, ["server.api_key_env=MY_KEY"], environ={}))
    env = environment(launch, {"MY_KEY": "s3cret", "PATH": "/bin"})
    assert env["VLLM_API_KEY"] == "s3cret" and env["PATH"] == "/bin" and env["HF_HUB_OFFLINE"] == "1"
    with pytest.raises(ConfigError, match=r"server.api_key_env names \$MY_KEY, but it is unset"):
        environment(launch, {})


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


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_serve_dry_run_changes_nothing_and_prints_the_exact_command(standin_model_dir, tmp_path):
    """No directory, no report, no cache dirs: only the command serve would exec (render's, in the cpu case)."""
    port = free_port()
    (tmp_path / "keep").write_text("x")
    before = _tree(tmp_path)
    sets = ["--set", f"server.cache_dir={tmp_path}/c", "--set", f"server.port={port}"]
    result = cli("serve", "--dry-run", "--config", str(DEV_CONFIG), *sets)
    assert result.returncode == 0, result.stderr
    assert _tree(tmp_path) == before  # not even the cache dirs
    rendered = cli("render", "--config", str(DEV_CONFIG), *sets)
    lines = result.stdout.splitlines()
    assert lines[:5] == [
        "# llama-ascend serve --dry-run: nothing was fetched, created or written",
        f"# weights: local model dir {standin_model_dir}, verified",
        "# preflight: 6 check(s) passed, 0 warning(s)",
        "# the same command as `llama-ascend render`, in the caller's environment",
        f"VLLM_CACHE_ROOT={tmp_path}/c/vllm \\",
    ]
    assert "\n".join(lines[4:]) + "\n" == rendered.stdout


def test_serve_dry_run_on_an_empty_volume_says_what_it_would_fetch(tmp_path):
    """A hub source with nothing fetched: no download, no directory on the volume, the plan and the command."""
    volume = tmp_path / "volume"
    volume.mkdir()
    sets = ["model.id=HuggingFaceTB/SmolLM2-135M-Instruct", f"model.path={volume}", "backend=cpu"]
    sets += ["server.host=127.0.0.1", f"server.port={free_port()}"]
    result = cli("serve", "--dry-run", "--config", str(PROD_CONFIG), *(a for s in sets for a in ("--set", s)))
    assert result.returncode == 0, result.stderr
    assert list(volume.iterdir()) == []
    model_dir = volume / "modelscope/HuggingFaceTB/SmolLM2-135M-Instruct/master"
    assert (
        f"# weights: would fetch modelscope HuggingFaceTB/SmolLM2-135M-Instruct@master into {model_dir} (then "
        "preflight checks the files)\n"
    ) in result.stdout
    assert f"--model {model_dir} " in result.stdout
    assert "unset: <model.path>/cache" not in result.stdout  # the profile names its cache dir


def test_dry_run_on_ascend_shows_what_serve_adds_to_render(tmp_path, standin_model_dir, monkeypatch):
    """On ascend serve sources the CANN scripts and sets the device variable: the dry run prints both, named as
    serve's additions. (The node checks are stubbed: there is no NPU here; they have their own tests.)"""
    from llama_ascend import preflight, serve

    cann = tmp_path / "Ascend"
    (cann / "ascend-toolkit").mkdir(parents=True)
    (cann / "ascend-toolkit/set_env.sh").write_text("export ASCEND_TOOLKIT_HOME=/opt/x\n")
    monkeypatch.setattr(preflight, "run_checks", lambda *a, **k: [preflight.Finding("port", True, "free")])
    config = load_config(PROD_CONFIG, ["model.source=local", f"model.path={standin_model_dir}"], environ={})
    environ = {"LLAMA_ASCEND_CANN_ROOTS": str(cann), "PATH": "/usr/bin:/bin", "ASCEND_VISIBLE_DEVICES": "4,5"}
    prepared = serve.prepare(config, environ, dry_run=True)
    assert prepared.added == {
        "ASCEND_TOOLKIT_HOME": "/opt/x",
        "LLAMA_ASCEND_CANN_ENV": f"{cann}/ascend-toolkit/set_env.sh",
        "ASCEND_RT_VISIBLE_DEVICES": "0,1",  # cards 4 and 5 are logical 0 and 1 in the container
    }
    text = serve.dry_run_text(prepared).splitlines()
    assert text[3] == (
        "# differs from `llama-ascend render`: serve adds ASCEND_RT_VISIBLE_DEVICES, ASCEND_TOOLKIT_HOME, "
        "LLAMA_ASCEND_CANN_ENV to the caller's environment"
    )
    assert text[4:7] == [
        "ASCEND_TOOLKIT_HOME=/opt/x \\",
        f"  LLAMA_ASCEND_CANN_ENV={cann}/ascend-toolkit/set_env.sh \\",
        "  ASCEND_RT_VISIBLE_DEVICES=0,1 \\",
    ]
    # then exactly what `render` prints
    assert "\n".join(text[7:]) == "  " + render(config, python=sys.executable).shell()


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
    """SIGTERM while a request streams: tokens keep arriving after it, the request completes, then the server exits
    cleanly within the drain. Event-driven: SIGTERM goes out as soon as the first token has arrived."""
    body = {
        "model": dev_server.model,
        "prompt": "Count from one to one hundred:",
        "max_tokens": 64,
        "temperature": 0,
        "stream": True,
        "ignore_eos": True,
    }
    events: list[tuple[float, str]] = []  # (when it arrived, the SSE data)
    first_event = threading.Event()
    failure: list[BaseException] = []
    headers = {"Authorization": f"Bearer {dev_server.api_key}"}

    def stream() -> None:
        try:
            with httpx.stream("POST", f"{dev_server.url}/v1/completions", json=body, headers=headers, timeout=300) as r:
                for line in r.iter_lines():
                    if line.startswith("data:"):
                        events.append((time.monotonic(), line[5:].strip()))
                        first_event.set()
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)
        finally:
            first_event.set()  # never leave the main thread waiting

    client = threading.Thread(target=stream)
    client.start()
    first_event.wait()  # set by the stream thread on its first event (or when it fails: httpx's timeout bounds it)
    assert events, f"no event before the stream ended: {failure}"
    sent = time.monotonic()
    dev_server.process.send_signal(signal.SIGTERM)
    client.join()
    returncode = dev_server.process.wait(timeout=300)  # timely: the fixture's shutdown_timeout plus teardown
    exited_after = time.monotonic() - sent
    assert not failure, failure
    assert events[-1][1] == "[DONE]", dev_server.log()[-3000:]
    chunks = [(when, json.loads(data)) for when, data in events[:-1]]
    assert all("choices" in c for _, c in chunks), [c for _, c in chunks if "choices" not in c]
    with_text = [(when, c) for when, c in chunks if c["choices"] and c["choices"][0]["text"]]
    after = [when for when, _ in with_text if when > sent]
    assert len(with_text) > 60 and chunks[-1][1]["choices"][0]["finish_reason"] == "length"  # ran to max_tokens
    assert after, "every token had arrived before SIGTERM was sent: the request was not in flight"
    assert events[-1][0] > sent  # and it completed after SIGTERM
    assert returncode == 0, dev_server.log()[-3000:]
    print(f"{len(after)} of {len(with_text)} tokens after SIGTERM; drained and exited {exited_after:.1f} s after it")
