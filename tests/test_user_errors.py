"""Every error a user can cause is one `error:` line per problem and a named exit code, never a traceback.

Each test drives the real entry point (`python -m llama_ascend`) against a real effect: a regular file where a
directory must be, a tmpfs mounted read-only or filled up (where this host lets the tests mount), a port the test
holds, a port that refuses connections, /dev/full. The expected lines are written out by hand.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import DEV_CONFIG, PROD_CONFIG, USER_ERRORS, cli
from llama_ascend_dev.server_process import free_port
from test_preflight import NPU_SMI, make_model, make_node, write_config


def sets(*items: str) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def assert_error_lines(result: subprocess.CompletedProcess[str], code: int, lines: list[str]) -> None:
    """Exit `code`, and stderr is exactly these lines (each `error: ...`), no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.splitlines() == lines, result.stderr
    assert result.returncode == code, result.stderr
    test = os.environ["PYTEST_CURRENT_TEST"].split("::")[-1].split(" ")[0]
    USER_ERRORS.append((test, code, " / ".join(line.removeprefix("error: ").strip() for line in lines)))


@pytest.fixture
def blocker(tmp_path: Path) -> Path:
    """A regular file where the commands below expect a directory."""
    path = tmp_path / "file"
    path.write_text("not a directory\n")
    return path


def _mount_tmpfs(target: Path, options: str) -> None:
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"this host does not let the tests mount a tmpfs ({done.stderr.strip() or done.returncode})")


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory on a tmpfs mounted read-only (root ignores file modes, not a read-only mount)."""
    mount = tmp_path / "ro"
    mount.mkdir()
    _mount_tmpfs(mount, "size=1m")
    try:
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True, capture_output=True)
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False, capture_output=True)


@pytest.fixture
def full_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory on a small tmpfs filled to the last byte."""
    mount = tmp_path / "full"
    mount.mkdir()
    _mount_tmpfs(mount, "size=256k")
    try:
        with (mount / "filler").open("wb", buffering=0) as filler:  # unbuffered: close has nothing left to write
            try:
                while True:
                    filler.write(b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False, capture_output=True)


# --------------------------------------------------------------------------------------------------- config


def test_config_problems_are_reported_all_at_once_with_every_extra_args_duplicate(tmp_path: Path) -> None:
    profile = tmp_path / "profile.yaml"
    profile.write_text("server:\n  max_num_seq: 4\n  extra_args: [--port=9, --enable-prefix-caching, -tp, '2']\n")
    result = cli(
        "render",
        "--config",
        str(profile),
        *sets("server.port=0", "server.quantization=awq", "server.extra_args=[--dtype=half, --max-model-len=8]"),
        env={"LLAMA_ASCEND__SERVER__SHUTDOWN_TIMEOUT": "soon"},
    )
    assert_error_lines(
        result,
        2,
        [
            "error: --set: server.port: Input should be greater than or equal to 1 (got 0)",
            "error: $LLAMA_ASCEND__SERVER__SHUTDOWN_TIMEOUT: server.shutdown_timeout: Input should be a valid integer "
            "(got 'soon')",
            f"error: {profile}: server.max_num_seq: unknown key (did you mean 'max_num_seqs'?)",
            "error: --set: server.extra_args: '--dtype=half' duplicates the managed key server.dtype; set that key "
            "instead",
            "error: --set: server.extra_args: '--max-model-len=8' duplicates the managed key server.max_model_len; set "
            "that key instead",
            "error: --set: server.quantization: 'awq' is refused on the ascend backend: vLLM-Ascend 0.18.0 supports "
            "only 'ascend', 'compressed-tensors'; use a checkpoint quantized for Ascend (msModelSlim W8A8/W8A16: "
            "`ascend`) or compressed-tensors, or null for the bf16 weights",
        ],
    )


def test_full_and_piecewise_on_ascend_is_refused_saying_what_it_would_run() -> None:
    result = cli("render", "--config", str(PROD_CONFIG), *sets("server.compilation=FULL_AND_PIECEWISE"))
    assert_error_lines(
        result,
        2,
        [
            "error: --set: server.compilation: 'FULL_AND_PIECEWISE' is refused on the ascend backend: vLLM-Ascend "
            "0.18.0 runs 'PIECEWISE', 'FULL_DECODE_ONLY', 'FULL', 'NONE'; it silently runs FULL_AND_PIECEWISE as "
            "PIECEWISE; set server.compilation to one of them"
        ],
    )


def test_combinations_vllm_ascend_refuses_are_refused_together_with_their_fixes() -> None:
    result = cli(
        "render",
        "--config",
        str(PROD_CONFIG),
        *sets(
            "env.VLLM_ASCEND_ENABLE_FLASHCOMM1=1",
            "env.ASCEND_LAUNCH_BLOCKING=1",
            "server.additional_config={torchair_graph_config: {enabled: true}, ascend_scheduler_config: {}}",
            "server.cudagraph_capture_sizes=[1, 2, 4]",
        ),
    )
    assert_error_lines(
        result,
        2,
        [
            "error: --set: env.VLLM_ASCEND_ENABLE_FLASHCOMM1: VLLM_ASCEND_ENABLE_FLASHCOMM1=1 with "
            'server.tensor_parallel_size 1: vLLM-Ascend 0.18.0 stops at start-up ("Flash Comm v1 is only supported '
            'when tp_size > 1"); remove it (it splits TP all-reduces, so it only helps with tensor_parallel_size >= '
            "2) or raise server.tensor_parallel_size",
            "error: --set: env.ASCEND_LAUNCH_BLOCKING: ASCEND_LAUNCH_BLOCKING=1 with ACL graphs (server.compilation "
            'PIECEWISE): vLLM-Ascend 0.18.0 refuses to start ("ACL graph is incompatible with '
            'ASCEND_LAUNCH_BLOCKING=1"); unset it, or debug with server.enforce_eager=true',
            "error: --set: server.additional_config: `ascend_scheduler_config`: the Ascend scheduler was removed in "
            "vLLM-Ascend 0.12.0rc1; vLLM's scheduler runs, and 0.18.0 ignores the key silently; remove it",
            "error: --set: server.additional_config: `torchair_graph_config`: torchair graph mode was removed in "
            "vLLM-Ascend 0.12.0rc1; ACL graphs replace it (server.compilation), and 0.18.0 ignores the key "
            "silently; remove it",
            "error: --set: server.cudagraph_capture_sizes: the largest size 4 is below server.max_num_seqs 8: decode "
            "batches of 5-8 sequences would run without a graph; add 8",
        ],
    )


def test_an_environment_number_in_a_profile_is_a_string_and_judged_with_the_graph_mode(tmp_path: Path) -> None:
    """`env: {ASCEND_LAUNCH_BLOCKING: 1}` (YAML reads an int) is the string "1" to the server: refused with graphs,
    rendered as "1" in eager mode."""
    profile = tmp_path / "profile.yaml"
    profile.write_text(PROD_CONFIG.read_text() + "env:\n  ASCEND_LAUNCH_BLOCKING: 1\n")
    refused = cli("render", "--config", str(profile))
    assert refused.returncode == 2 and f"error: {profile}: env.ASCEND_LAUNCH_BLOCKING: " in refused.stderr
    eager = cli("render", "--json", "--config", str(profile), *sets("server.enforce_eager=true"))
    assert eager.returncode == 0, eager.stderr
    assert json.loads(eager.stdout)["env"]["ASCEND_LAUNCH_BLOCKING"] == "1"
    flashcomm_tp2 = cli(
        "render",
        "--config",
        str(PROD_CONFIG),
        *sets("server.tensor_parallel_size=2", "env.VLLM_ASCEND_ENABLE_FLASHCOMM1=1"),
    )
    assert flashcomm_tp2.returncode == 0, flashcomm_tp2.stderr


# ---------------------------------------------------------------------------------------------------- serve


def test_serve_with_the_cache_dir_under_a_regular_file(blocker: Path) -> None:
    result = cli("serve", "--config", str(DEV_CONFIG), *sets(f"server.cache_dir={blocker}/cache"))
    assert_error_lines(
        result,
        3,
        [
            "error: preflight: 1 check(s) failed",
            f"error:   cache-dir: server.cache_dir {blocker}/cache cannot be created: {blocker} is a regular file, not "
            "a directory; likely cause: a file sits where the directory (or one of its parents) should be; fix: move "
            f"{blocker} away, or point server.cache_dir at a directory",
        ],
    )


def test_serve_with_the_cache_dir_on_a_read_only_volume(read_only_dir: Path) -> None:
    result = cli("serve", "--config", str(DEV_CONFIG), *sets(f"server.cache_dir={read_only_dir}/cache"))
    assert_error_lines(
        result,
        3,
        [
            "error: preflight: 1 check(s) failed",
            f"error:   cache-dir: server.cache_dir {read_only_dir}/cache would be created under {read_only_dir}, which "
            "is on a read-only filesystem; likely cause: the volume is mounted read-only; fix: mount the volume "
            "read-write (docker -v SRC:DST:rw; Kubernetes: readOnly: false), or point server.cache_dir at a directory "
            "on a writable filesystem",
        ],
    )


def test_serve_with_the_cache_dir_on_a_full_disk(full_dir: Path) -> None:
    result = cli("serve", "--config", str(DEV_CONFIG), *sets(f"server.cache_dir={full_dir}"))
    assert_error_lines(
        result,
        3,
        [
            "error: preflight: 1 check(s) failed",
            f"error:   cache-dir: server.cache_dir {full_dir} is on a full filesystem (No space left on device); fix: "
            "free space or enlarge the volume, or point server.cache_dir at a directory on another filesystem",
        ],
    )


def test_serve_with_the_volume_under_a_regular_file_stops_before_fetching(blocker: Path, tmp_path: Path) -> None:
    """The weights are missing, so serve would fetch them: it checks what it must write first (no download; the
    endpoint refuses connections anyway)."""
    items = (f"model.path={blocker}/models", f"server.cache_dir={tmp_path}/cache", "model.endpoint=http://127.0.0.1:9")
    result = cli("serve", "--config", str(PROD_CONFIG), *sets(*items))
    assert_error_lines(
        result,
        3,
        [
            "error: preflight: 1 check(s) failed",
            f"error:   volume: model.path {blocker}/models cannot be created: {blocker} is a regular file, not a "
            "directory: fetch cannot download the weights there; likely cause: a file sits where the directory (or "
            f"one of its parents) should be; fix: move {blocker} away, or point model.path at a directory",
        ],
    )
    assert not (tmp_path / "cache").exists()


def test_serve_dry_run_on_an_unwritable_cache_dir_reports_it_and_writes_nothing(blocker: Path, tmp_path: Path) -> None:
    before = sorted(p.name for p in tmp_path.iterdir())
    result = cli("serve", "--dry-run", "--config", str(DEV_CONFIG), *sets(f"server.cache_dir={blocker}/cache"))
    assert result.returncode == 3 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[1].startswith(f"error:   cache-dir: server.cache_dir {blocker}/cache cannot")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# ------------------------------------------------------------------------------------------------ preflight


def test_preflight_with_the_cache_dir_under_a_regular_file(blocker: Path) -> None:
    items = (f"server.cache_dir={blocker}/c", f"server.port={free_port()}")
    result = cli("preflight", "--config", str(DEV_CONFIG), *sets(*items), env={"COLUMNS": "1000"})
    assert_error_lines(
        result,
        3,
        ["error: preflight: 1 check(s) failed (cache-dir); causes and fixes are in the table above"],
    )
    assert "is a regular file, not a directory" in result.stdout


def test_preflight_report_under_a_regular_file(blocker: Path) -> None:
    result = cli("preflight", "--config", str(DEV_CONFIG), "--report", f"{blocker}/preflight.json")
    assert_error_lines(
        result,
        2,
        [
            f"error: --report {blocker}/preflight.json: cannot write it: its directory {blocker} is a regular file, "
            f"not a directory; fix: move {blocker} away, or point --report at a file elsewhere"
        ],
    )
    assert result.stdout == ""  # refused before any check ran


def test_preflight_report_on_a_full_disk(full_dir: Path) -> None:
    result = cli("preflight", "--config", str(DEV_CONFIG), "--report", f"{full_dir}/preflight.json")
    assert_error_lines(
        result,
        2,
        [
            f"error: --report {full_dir}/preflight.json: cannot write it: its directory {full_dir} is on a full "
            "filesystem (No space left on device); fix: free space or enlarge the volume, or point --report at a file "
            "elsewhere on another filesystem"
        ],
    )


def test_preflight_without_npu_smi(tmp_path: Path) -> None:
    """An ascend node whose container lacks the host's npu-smi: a finding with the mount to add, exit 3."""
    config = write_config(tmp_path, make_model(tmp_path / "model"), cache_dir=str(tmp_path / "cache"))
    root = make_node(tmp_path / "root", cards=(0,))
    environ = {"PATH": "/usr/bin:/bin", "ASCEND_TOOLKIT_HOME": "/usr/local/Ascend/ascend-toolkit/latest"}
    environ["LLAMA_ASCEND_NPU_SMI"] = ""
    if any(Path(p).is_file() for p in ("/usr/local/bin/npu-smi", "/usr/local/sbin/npu-smi")):
        pytest.skip("this host has an npu-smi")
    result = cli("preflight", "--config", str(config), "--root", str(root), "--json", env=environ)
    assert_error_lines(
        result,
        3,
        [
            "error: preflight: 1 check(s) failed",
            "error:   npu-smi: npu-smi not found (not on PATH, nor in /usr/local/bin/npu-smi, /usr/local/sbin/npu-smi, "
            "/usr/local/Ascend/driver/tools/npu-smi); likely cause: the host's npu-smi is not mounted into the "
            "container; fix: mount it: -v /usr/local/bin/npu-smi:/usr/local/bin/npu-smi:ro (or set "
            "$LLAMA_ASCEND_NPU_SMI)",
        ],
    )
    assert [f["check"] for f in json.loads(result.stdout)["findings"] if not f["ok"]] == ["npu-smi"]


# ------------------------------------------------------------------------------------- exporter, bench, verify


def test_exporter_on_a_port_already_in_use() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = cli("exporter", "--port", str(port), "--npu-smi-output", str(NPU_SMI / "910b3-2cards-idle-crlf.txt"))
    assert_error_lines(
        result,
        2,
        [
            f"error: exporter: cannot listen on 127.0.0.1:{port}: the port is already in use; fix: stop what listens "
            f"there (`ss -ltnp | grep :{port}`) or choose another port: --port N (env LLAMA_ASCEND_EXPORTER_PORT; 0 "
            "picks a free one)"
        ],
    )


def test_exporter_port_out_of_range_from_its_environment_twin() -> None:
    """A usage error is one line too (argparse's usage block is in --help)."""
    result = cli("exporter", env={"LLAMA_ASCEND_EXPORTER_PORT": "70000"})
    assert_error_lines(
        result,
        2,
        [
            "error: llama-ascend exporter: argument --port: 70000 is not a port number (0-65535; 0 picks a free one) "
            "(see `llama-ascend exporter --help`)"
        ],
    )


def test_bench_out_under_a_regular_file_before_any_request(blocker: Path) -> None:
    """Refused before the sweep: the URL is never contacted (nothing listens there)."""
    result = cli("bench", "--url", "http://127.0.0.1:9", "--out", f"{blocker}/results")
    assert_error_lines(
        result,
        2,
        [
            f"error: --out {blocker}/results cannot be created: {blocker} is a regular file, not a directory; fix: "
            f"move {blocker} away, or point --out at a directory"
        ],
    )


def test_bench_out_on_a_read_only_volume(read_only_dir: Path) -> None:
    result = cli("bench", "--url", "http://127.0.0.1:9", "--out", str(read_only_dir))
    assert_error_lines(
        result,
        2,
        [
            f"error: --out {read_only_dir} is on a read-only filesystem; fix: mount the volume read-write (docker -v "
            "SRC:DST:rw; Kubernetes: readOnly: false), or point --out at a directory on a writable filesystem"
        ],
    )


def test_verify_output_under_a_regular_file_before_the_run(blocker: Path) -> None:
    result = cli(
        "verify", "--url", "http://127.0.0.1:9", "--reference-model", "/nonexistent", "--output", f"{blocker}/v.json"
    )
    assert_error_lines(
        result,
        2,
        [
            f"error: --output {blocker}/v.json: cannot write it: its directory {blocker} is a regular file, not a "
            f"directory; fix: move {blocker} away, or point --output at a file elsewhere"
        ],
    )


# --------------------------------------------------------------------------------------------- fetch, schema


def test_fetch_from_a_hub_that_refuses_connections(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        endpoint = f"http://127.0.0.1:{closed.getsockname()[1]}"
        items = (
            "model.source=huggingface",
            "model.id=meta-llama/Llama-3.1-8B-Instruct",
            "model.revision=main",
            f"model.path={tmp_path / 'volume'}",
            f"model.endpoint={endpoint}",
        )
        result = cli(
            "fetch",
            "--config",
            str(PROD_CONFIG),
            "--no-progress",
            *sets(*items),
            env={"LLAMA_ASCEND_FETCH_RETRIES": "0", "HF_TOKEN": "hf_test", "HF_HUB_OFFLINE": ""},
        )
    assert_error_lines(
        result,
        1,
        [
            "error: huggingface model meta-llama/Llama-3.1-8B-Instruct revision main: (listing): failed after 0 "
            f"retries (ConnectError); check the network and the endpoint {endpoint} (model.endpoint)"
        ],
    )


def test_fetch_into_a_volume_under_a_regular_file(blocker: Path) -> None:
    """fetch's own message, with the file in the way named, and nothing else (not also that the metrics textfile
    on that volume cannot be written)."""
    items = (f"model.path={blocker}/models", "model.endpoint=http://127.0.0.1:9")
    result = cli("fetch", "--config", str(PROD_CONFIG), "--no-progress", *sets(*items))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"error: LLM-Research/Meta-Llama-3.1-8B-Instruct@master: cannot write the weights under {blocker}/models: Not "
        f"a directory ({blocker}/models/modelscope/LLM-Research/Meta-Llama-3.1-8B-Instruct); {blocker} is a regular "
        "file where a directory is needed: move it away, or point model.path elsewhere"
    ]


def test_schema_output_on_a_full_device() -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("this host has no /dev/full")
    result = cli("schema", "-o", "/dev/full")
    assert_error_lines(
        result,
        2,
        [
            "error: -o /dev/full: cannot write the schema: No space left on device; fix: the filesystem is full: free "
            "space or enlarge the volume"
        ],
    )


# ------------------------------------------------------------------------------------------ the generic net


def test_an_os_error_no_command_anticipates_is_one_line_naming_the_path(blocker: Path) -> None:
    """The stand-in converter has no check of its own: the CLI boundary turns the OSError into one line with the
    path and the fix for its errno; --debug adds the traceback."""
    result = cli("standin", "--output", f"{blocker}/standin", timeout=300)
    line = (
        f"error: {blocker}: File exists; fix: {blocker} is a regular file where a directory is needed: move it away, "
        "or choose another path"
    )
    assert_error_lines(result, 1, [line])
    debug = cli("--debug", "standin", "--output", f"{blocker}/standin", timeout=300)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and debug.stderr.splitlines()[-1] == line
