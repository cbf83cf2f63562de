"""Preflight against fake device/driver trees (a temp dir as the filesystem root) and real npu-smi text."""

from __future__ import annotations

import itertools
import json
import socket
from pathlib import Path

import pytest
import yaml

from conftest import DEV_CONFIG, PROD_CONFIG, cli
from llama_ascend import preflight
from llama_ascend.config import load_config
from llama_ascend.errors import ExitCode, PreflightFailed
from llama_ascend_dev.server_process import free_port

NPU_SMI = Path(__file__).parent / "fixtures" / "npu-smi"
TOOLKIT = "/usr/local/Ascend/ascend-toolkit/latest"
CANN_ENV = {"ASCEND_TOOLKIT_HOME": TOOLKIT, "PATH": "/usr/bin"}
# Llama-3.1-8B-Instruct's config.json (the fields preflight reads) and its four shards' real sizes.
LLAMA_8B = {
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "torch_dtype": "bfloat16",
    "tie_word_embeddings": False,
}
SHARDS = {
    "model-00001-of-00004.safetensors": 4976698672,
    "model-00002-of-00004.safetensors": 4999802720,
    "model-00003-of-00004.safetensors": 4915916176,
    "model-00004-of-00004.safetensors": 1168138808,
}


def sparse_safetensors(path: Path, size: int) -> None:
    """A structurally whole safetensors file of `size` bytes (one U8 tensor), sparse on disk."""
    data = size - 8 - 256
    header = json.dumps({"weight": {"dtype": "U8", "shape": [data], "data_offsets": [0, data]}}).ljust(256)
    with path.open("wb") as handle:
        handle.write((256).to_bytes(8, "little") + header.encode())
        handle.truncate(size)


def make_model(directory: Path, shards: dict[str, int] = SHARDS) -> Path:
    """A model dir with Llama-3.1-8B's config and shards of the real sizes (sparse files)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(LLAMA_8B))
    (directory / "tokenizer.json").write_text("{}")
    (directory / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {f"w{i}": n for i, n in enumerate(shards)}})
    )
    for name, size in shards.items():
        sparse_safetensors(directory / name, size)
    return directory


def make_node(
    root: Path,
    cards=(0,),
    management=True,
    driver=True,
    version=True,
    cann=True,
    mem_available_kb=None,
    *,
    driver_version="25.5.1",
    cpus_allowed="0-191",
    cpu_max=None,
    shm_size_kib=8 * 1024 * 1024,
    vnpus=(),
    soft_partition=False,
) -> Path:
    """A filesystem root with the device nodes, driver and CANN an Ascend container has; by default a healthy one
    (HDK 25.5.1, 192 CPUs, an 8 GiB /dev/shm, whole cards).

    `driver_version`: version.info's Version line. `cpus_allowed`: Cpus_allowed_list in proc/self/status (None: no
    file). `cpu_max`: cgroup v2 sys/fs/cgroup/cpu.max (`quota period`). `shm_size_kib`: the size= of the tmpfs at
    /dev/shm in proc/mounts (None: no mount listed). `vnpus`: /dev/vdavinciN nodes (vNPUs under the host's name).
    `soft_partition`: vCANN-RT preloaded by etc/ld.so.preload, as on a soft-partitioned NPU."""
    (root / "dev").mkdir(parents=True, exist_ok=True)
    for card in cards:
        (root / "dev" / f"davinci{card}").touch()
    for vnpu in vnpus:
        (root / "dev" / f"vdavinci{vnpu}").touch()
    if management:
        for name in ("davinci_manager", "devmm_svm", "hisi_hdc"):
            (root / "dev" / name).touch()
    drv = root / "usr/local/Ascend/driver"
    if driver:
        (drv / "lib64/driver").mkdir(parents=True)
        (drv / "lib64/driver/libascend_hal.so").touch()
    if version:
        drv.mkdir(parents=True, exist_ok=True)
        (drv / "version.info").write_text(f"Version={driver_version}\nascendhal_version=7.35.23\n")
    if cann:
        (root / TOOLKIT.lstrip("/")).mkdir(parents=True)
        (root / "usr/local/Ascend/ascend-toolkit/set_env.sh").write_text("export ASCEND_TOOLKIT_HOME=...\n")
    (root / "proc/self").mkdir(parents=True, exist_ok=True)
    if mem_available_kb is not None:
        (root / "proc/meminfo").write_text(f"MemTotal:       25000000 kB\nMemAvailable:   {mem_available_kb} kB\n")
    if cpus_allowed is not None:
        (root / "proc/self/status").write_text(f"Name:\tpython3\nCpus_allowed_list:\t{cpus_allowed}\n")
    if cpu_max is not None:
        (root / "sys/fs/cgroup").mkdir(parents=True, exist_ok=True)
        (root / "sys/fs/cgroup/cpu.max").write_text(f"{cpu_max}\n")
    if shm_size_kib is not None:
        (root / "proc/mounts").write_text(
            "overlay / overlay rw,relatime,lowerdir=/l,upperdir=/u,workdir=/w 0 0\n"
            f"shm /dev/shm tmpfs rw,nosuid,nodev,noexec,relatime,size={shm_size_kib}k 0 0\n"
        )
    if soft_partition:
        (root / "opt/enpu/vcann-rt/lib").mkdir(parents=True)
        (root / "opt/enpu/vcann-rt/lib/libvruntime.so").touch()
        (root / "etc").mkdir(parents=True, exist_ok=True)
        (root / "etc/ld.so.preload").write_text("/opt/enpu/vcann-rt/lib/libvruntime.so\n")
    return root


def write_config(tmp_path: Path, model_dir: Path, **server) -> Path:
    data = {
        "backend": "ascend",
        "model": {"source": "local", "path": str(model_dir), "served_name": "Llama-3.1-8B-Instruct"},
        "server": {"host": "127.0.0.1", "port": free_port(), **server},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def config_for(tmp_path: Path, **server):
    return load_config(write_config(tmp_path, make_model(tmp_path / "model"), **server), environ={})


def by_check(findings, check: str) -> list[preflight.Finding]:
    return [f for f in findings if f.check == check]


def failed_checks(findings) -> set[str]:
    return {f.check for f in preflight.failures(findings)}


def test_healthy_910b_node_passes(tmp_path: Path) -> None:
    """An ARM host with HDK 25.5.1, 192 CPUs, an 8 GiB /dev/shm and two idle whole cards: every check passes."""
    config = config_for(tmp_path)
    root = make_node(tmp_path / "root", cards=(0, 1))
    findings = preflight.run_checks(
        config, root, NPU_SMI / "910b3-2cards-idle-crlf.txt", environ=CANN_ENV, machine="aarch64"
    )
    assert [f.describe() for f in findings if not f.ok] == []
    assert {"driver", "cpu-binding", "shm", "vnpu"} <= {f.check for f in findings}
    [hbm] = by_check(findings, "hbm")
    # 65536 MB on the label, 3161 MB kept at idle -> torch sees 60.9 GiB; 0.9 of it is vLLM's budget.
    assert "3161 MB kept by the firmware" in hbm.message
    assert "torch sees 60.9 GiB" in hbm.message
    assert "weights 15.0 GiB" in hbm.message  # the shards' size, per card
    assert "KV cache for 8 x 4096 tokens 4.0 GiB" in hbm.message  # 128 KiB per token for Llama-3.1-8B
    preflight.raise_on_failure(findings)  # does not raise


def test_reference_node_with_vllm_still_running_fails_on_busy_card_and_hbm(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    root = make_node(tmp_path / "root", cards=(0,))
    findings = preflight.run_checks(config, root, NPU_SMI / "910b-reference-vllm.txt", environ=CANN_ENV)
    assert failed_checks(findings) == {"card-busy", "hbm"}
    [busy] = preflight.failures(by_check(findings, "card-busy"))
    assert "pid 32596 (VLLMEngineCor, 56624 MB)" in busy.message
    assert "another process or container" in busy.cause
    [hbm] = preflight.failures(by_check(findings, "hbm"))
    assert "5.7 GiB is free" in hbm.message and "56624 MB held by other processes" in hbm.message
    with pytest.raises(PreflightFailed) as caught:
        preflight.raise_on_failure(findings)
    assert caught.value.exit_code == ExitCode.PREFLIGHT == 3
    assert "2 check(s) failed" in str(caught.value)
    assert "card-busy" in str(caught.value) and "hbm:" in str(caught.value)


def test_every_missing_piece_is_reported_at_once(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    root = make_node(tmp_path / "root", cards=(0,), management=False, driver=False, version=False, cann=False)
    (root / "usr/local/Ascend/ascend-toolkit").mkdir(parents=True)
    (root / "usr/local/Ascend/ascend-toolkit/set_env.sh").write_text("")
    findings = preflight.run_checks(config, root, NPU_SMI / "910b3-8cards-one-busy.txt", environ={})
    failed = preflight.failures(findings)
    messages = "\n".join(f.describe() for f in failed)
    for device in ("davinci_manager", "devmm_svm", "hisi_hdc"):
        assert f"container started without --device /dev/{device}" in messages
    assert "libascend_hal.so is missing" in messages and "driver's lib64 is not mounted" in messages
    assert "version.info is missing" in messages
    assert "set_env.sh was not sourced" in messages
    with pytest.raises(PreflightFailed) as caught:
        preflight.raise_on_failure(findings)
    assert f"{len(failed)} check(s) failed" in str(caught.value)
    assert len(failed) == 6


def test_cann_in_a_layout_serve_does_not_source_is_not_an_install(tmp_path: Path) -> None:
    """ascend_env.SCRIPTS is what serve sources; a set_env.sh elsewhere (Ascend/cann/) is named, not accepted."""
    config = config_for(tmp_path)
    root = make_node(tmp_path / "root", cards=(0,), cann=False)
    (root / "usr/local/Ascend/cann").mkdir(parents=True)
    (root / "usr/local/Ascend/cann/set_env.sh").write_text("export ASCEND_TOOLKIT_HOME=...\n")
    findings = preflight.run_checks(config, root, NPU_SMI / "910b3-2cards-idle-crlf.txt", environ={})
    [cann] = preflight.failures(by_check(findings, "cann"))
    assert cann.message == (
        "CANN toolkit not found (no ASCEND_TOOLKIT_HOME, no /usr/local/Ascend/ascend-toolkit/set_env.sh); "
        "/usr/local/Ascend/cann/set_env.sh exists, but `llama-ascend serve` does not source it (it sources "
        "ascend-toolkit/set_env.sh, cann-*/share/info/ascendnpu-ir/bin/set_env.sh, nnal/atb/set_env.sh under "
        "/usr/local/Ascend)"
    )
    assert cann.fix.startswith("`source /usr/local/Ascend/cann/set_env.sh` before `llama-ascend serve`")
    assert "start the server with `llama-ascend serve`" not in cann.describe()


def test_cann_roots_follow_the_variable_serve_reads(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    root = make_node(tmp_path / "root", cards=(0,), cann=False)
    (root / "opt/cann/ascend-toolkit").mkdir(parents=True)
    (root / "opt/cann/ascend-toolkit/set_env.sh").write_text("")
    findings = preflight.run_checks(
        config, root, NPU_SMI / "910b3-2cards-idle-crlf.txt", environ={"LLAMA_ASCEND_CANN_ROOTS": "/opt/cann"}
    )
    [cann] = preflight.failures(by_check(findings, "cann"))
    assert cann.message.startswith("CANN is installed (/opt/cann/ascend-toolkit/set_env.sh) but its environment")


def test_allocated_card_not_mounted(tmp_path: Path) -> None:
    config = config_for(tmp_path, tensor_parallel_size=2)
    root = make_node(tmp_path / "root", cards=(2,))
    annotations = tmp_path / "annotations"
    annotations.write_text('kubernetes.io/config.seen="x"\nhuawei.com/AscendReal="Ascend910-2,Ascend910-3"\n')
    findings = preflight.run_checks(
        config, root, NPU_SMI / "910b3-8cards-one-busy.txt", environ=CANN_ENV, annotations_path=annotations
    )
    [nodes] = preflight.failures(by_check(findings, "device-nodes"))
    assert "allocates card(s) 3" in nodes.message and "/dev/davinci3 is not in the container" in nodes.message
    assert "not mounted" in nodes.cause
    [tp] = preflight.failures(by_check(findings, "tensor-parallel"))
    assert "needs 2 card(s), the runtime can use 1" in tp.message
    # card 2 is the busy one in this table
    assert "card-busy" in failed_checks(findings)


def test_physical_ids_in_rt_visible_devices(tmp_path: Path) -> None:
    config = config_for(tmp_path, tensor_parallel_size=2)
    root = make_node(tmp_path / "root", cards=(4, 5))
    env = {**CANN_ENV, "ASCEND_RT_VISIBLE_DEVICES": "4,5"}
    findings = preflight.run_checks(config, root, NPU_SMI / "910b3-8cards-one-busy.txt", environ=env)
    [visible] = preflight.failures(by_check(findings, "visible-devices"))
    assert "names logical id(s) 4, 5" in visible.message
    assert "set ASCEND_RT_VISIBLE_DEVICES=0,1" in visible.fix


def test_allocation_maps_to_logical_ids_and_cards_are_checked(tmp_path: Path) -> None:
    config = config_for(tmp_path, tensor_parallel_size=2)
    root = make_node(tmp_path / "root", cards=(4, 5))
    env = {**CANN_ENV, "ASCEND_VISIBLE_DEVICES": "4,5"}
    findings = preflight.run_checks(
        config, root, NPU_SMI / "910b3-8cards-one-busy.txt", environ=env, annotations_path=tmp_path / "none"
    )
    assert preflight.failures(findings) == []
    [visible] = by_check(findings, "visible-devices")
    assert "serve sets ASCEND_RT_VISIBLE_DEVICES=0,1 for cards 4, 5" in visible.message
    assert [f.message.split(" (")[0] for f in by_check(findings, "card-health")] == ["card 4", "card 5"]
    [hbm4, _hbm5] = by_check(findings, "hbm")
    assert "per card at TP=2" in hbm4.message and "weights 7.5 GiB" in hbm4.message


def test_kv_cache_for_every_sequence_not_fitting_is_a_warning(tmp_path: Path) -> None:
    """8 x 131072 tokens need 128 GiB of KV cache: vLLM still starts (one sequence fits), so it is a warning."""
    config = config_for(tmp_path, max_model_len=131072, max_num_seqs=8)
    root = make_node(tmp_path / "root", cards=(0, 1))
    findings = preflight.run_checks(config, root, NPU_SMI / "910b3-2cards-idle-crlf.txt", environ=CANN_ENV)
    assert preflight.failures(findings) == []
    [hbm] = by_check(findings, "hbm")
    assert (hbm.ok, hbm.severity) == (False, "warning")
    assert "KV cache for 8 x 131072 tokens 128.0 GiB" in hbm.message
    # 54.8 GiB - 15.0 GiB weights - 2 GiB runtime = 37.8 GiB of KV cache: two 16 GiB sequences
    assert hbm.message.endswith("vLLM starts, but only 2 of them fit at full length at once")
    assert "tensor_parallel_size" in hbm.fix and "max_model_len" in hbm.fix


def test_share_too_small_for_the_weights_proposes_the_share_that_holds_them(tmp_path: Path) -> None:
    config = config_for(tmp_path, max_model_len=131072, gpu_memory_utilization=0.5)
    root = make_node(tmp_path / "root", cards=(0, 1))
    findings = preflight.run_checks(config, root, NPU_SMI / "910b3-2cards-idle-crlf.txt", environ=CANN_ENV)
    [hbm] = preflight.failures(findings)
    # weights 15.0 + one 131072-token sequence 16.0 + runtime 2.0 = 33.0 GiB of the 60.9 GiB torch sees: 0.55
    assert "the model needs at least ~33.0 GiB (weights 15.0 GiB + one 131072-token sequence's KV cache 16.0 GiB" in (
        hbm.message
    )
    assert hbm.fix.startswith("raise server.gpu_memory_utilization to 0.55 or more")


def test_card_too_small_for_any_share_advises_tp_or_a_shorter_context(tmp_path: Path) -> None:
    """A 16 GB card: even gpu_memory_utilization=1.0 cannot hold 15 GiB of weights + KV + runtime."""
    table = tmp_path / "small-card.txt"
    text = (NPU_SMI / "910b3-2cards-idle-crlf.txt").read_text()
    table.write_text(text.replace("/ 65536", "/ 16384"))
    config = config_for(tmp_path, gpu_memory_utilization=1.0)
    root = make_node(tmp_path / "root", cards=(0, 1))
    findings = preflight.run_checks(config, root, table, environ=CANN_ENV)
    [hbm] = preflight.failures(findings)
    assert "torch sees 12.9 GiB" in hbm.message  # 16384 - 3161 MB
    # TP 2: 7.5 GiB of weights + 0.25 GiB for one sequence + 2 GiB per card fit 12.9 GiB
    assert (
        hbm.fix
        == "even gpu_memory_utilization=1.0 cannot hold that: raise server.tensor_parallel_size to 2 (~9.7 GiB per card)"
    )


def test_a_card_with_4_gib_free_gets_no_share_that_cannot_hold_the_weights(tmp_path: Path) -> None:
    """Another workload leaves 4.2 GiB of 64 GB free: no gpu_memory_utilization holds 15 GiB of weights, so the
    advice is to free the card (it used to propose 0.05)."""
    table = tmp_path / "busy.txt"
    text = (NPU_SMI / "910b-reference-vllm.txt").read_text()
    table.write_text(text.replace("59678/ 65536", "61236/ 65536").replace("| 56624 |", "| 58182 |"))
    config = config_for(tmp_path)
    root = make_node(tmp_path / "root", cards=(0,))
    findings = preflight.run_checks(config, root, table, environ=CANN_ENV)
    [hbm] = preflight.failures(by_check(findings, "hbm"))
    assert "only 4.2 GiB is free (58182 MB held by other processes)" in hbm.message
    assert hbm.fix == (
        "free the card (stop the workload that holds it) or schedule on a free card; no gpu_memory_utilization "
        "fits: the 4.2 GiB free cannot hold ~17.5 GiB (weights 15.0 GiB + one 4096-token sequence's KV cache 0.5 GiB "
        "+ runtime 2.0 GiB); or tensor_parallel_size=8 on 8 cards with this much free each (~3.9 GiB per card)"
    )
    assert "gpu_memory_utilization to" not in hbm.fix


def test_a_half_busy_card_gets_a_share_that_still_holds_the_weights(tmp_path: Path) -> None:
    table = tmp_path / "half.txt"
    text = (NPU_SMI / "910b-reference-vllm.txt").read_text()
    table.write_text(text.replace("59678/ 65536", "33054/ 65536").replace("| 56624 |", "| 30000 |"))
    config = config_for(tmp_path)
    root = make_node(tmp_path / "root", cards=(0,))
    findings = preflight.run_checks(config, root, table, environ=CANN_ENV)
    [hbm] = preflight.failures(by_check(findings, "hbm"))
    # 32482 MB free of the 62482 MB torch sees: 0.51, less a margin; 0.50 holds 15.0 GiB of weights + 2 GiB runtime
    # and 13.6 GiB of KV cache, 111011 tokens at 128 KiB each, 27 sequences of 4096
    assert hbm.fix.startswith("free the card, or lower server.gpu_memory_utilization to 0.50: that still holds")
    assert hbm.fix.endswith("(27 sequence(s) of 4096 tokens at once)")


def test_sized_before_config_json_from_the_known_architecture(tmp_path: Path) -> None:
    """The reference model before its first fetch: Llama-3.1-8B in bf16 is 16.06 GB (15.0 GiB), 128 KiB per token."""
    config = load_config(PROD_CONFIG, [f"model.path={tmp_path / 'volume'}", f"server.port={free_port()}"], environ={})
    fp = preflight.footprint(config)
    assert (fp.weight_bytes, fp.kv_bytes_per_token, fp.assumed) == (16060522496, 131072, False)
    root = make_node(tmp_path / "root", cards=(0,))
    findings = preflight.run_checks(config, root, NPU_SMI / "910b3-2cards-idle-crlf.txt", environ=CANN_ENV)
    [hbm] = by_check(findings, "hbm")
    assert hbm.ok and hbm.message.endswith(
        "(weights 15.0 GiB + KV cache for 8 x 4096 tokens 4.0 GiB + runtime 2.0 GiB) (sized as Llama-3.1-8B in "
        "bfloat16 from its known architecture: config.json is not there yet)"
    )
    assert "cannot size" not in " ".join(f.message for f in findings)


def test_an_unknown_model_before_config_json_is_sized_by_a_stated_assumption(tmp_path: Path) -> None:
    sets = [
        f"model.path={tmp_path / 'volume'}",
        "model.id=Qwen/Qwen2.5-7B-Instruct",
        "server.gpu_memory_utilization=0.2",
    ]
    config = load_config(PROD_CONFIG, sets, environ={})
    assert preflight.footprint(config).assumed
    root = make_node(tmp_path / "root", cards=(0,))
    findings = preflight.run_checks(config, root, NPU_SMI / "910b3-2cards-idle-crlf.txt", environ=CANN_ENV)
    [hbm] = by_check(findings, "hbm")
    # an assumption cannot fail the node: 0.2 x 60.9 GiB is short of 17.5 GiB for Llama-3.1-8B, but that is a warning
    assert (hbm.ok, hbm.severity) == (False, "warning")
    assert hbm.message.endswith(
        "(assumed to be Llama-3.1-8B in bfloat16: config.json is not there yet and model.id Qwen/Qwen2.5-7B-Instruct "
        "is not one llama-ascend knows)"
    )


def test_unhealthy_card(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    root = make_node(tmp_path / "root", cards=(0, 1))
    findings = preflight.run_checks(config, root, NPU_SMI / "910b3-degraded-health.txt", environ=CANN_ENV)
    [health] = preflight.failures(findings)
    assert health.message == "card 0 (910B3) health is Warning"
    assert "npu-smi info -t health -i 0 -c 0" in health.fix


def test_npu_smi_error_is_a_finding_with_its_cause(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    root = make_node(tmp_path / "root", cards=(0,))
    findings = preflight.run_checks(config, root, NPU_SMI / "error-dcmi-8005.txt", environ=CANN_ENV)
    [smi] = preflight.failures(findings)
    assert smi.check == "npu-smi" and "-8005" in smi.message
    assert "/dev/davinci_manager" in smi.fix


def test_without_process_table_busy_is_a_warning(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    root = make_node(tmp_path / "root", cards=(0,))
    findings = preflight.run_checks(config, root, NPU_SMI / "910b3-no-process-table.txt", environ=CANN_ENV)
    assert preflight.failures(findings) == []
    [busy] = by_check(findings, "card-busy")
    assert not busy.ok and busy.severity == "warning"


def test_incomplete_weights(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    (model / "model-00003-of-00004.safetensors").unlink()
    with (model / "model-00002-of-00004.safetensors").open("r+b") as shard:
        shard.truncate(1 << 20)  # cut short, as by a killed download
    config = load_config(write_config(tmp_path, model), environ={})
    weights = preflight.check_weights(config)
    assert not weights.ok
    assert "shard model-00003-of-00004.safetensors is missing" in weights.message
    assert "model-00002-of-00004.safetensors: the header describes" in weights.message
    assert "interrupted" in weights.cause


def test_hub_weights_without_fetch_marker(tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    make_model(volume / "modelscope/LLM-Research/Meta-Llama-3.1-8B-Instruct/master")
    config = load_config(PROD_CONFIG, [f"model.path={volume}"], environ={})
    weights = preflight.check_weights(config)
    assert not weights.ok and "no matching completion marker from `llama-ascend fetch`" in weights.message
    assert "llama-ascend fetch" in weights.fix


def test_model_dir_without_tokenizer(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    (model / "tokenizer.json").unlink()
    config = load_config(write_config(tmp_path, model), environ={})
    finding = preflight.check_model_files(config)
    assert not finding.ok
    assert finding.message.endswith("lacks a tokenizer (tokenizer.json or tokenizer.model)")


def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        config = config_for(tmp_path, port=port)
        finding = preflight.check_port(config)
    assert not finding.ok and f"127.0.0.1:{port} is already in use" in finding.message


def test_cpu_backend_ram_check_on_a_fake_meminfo(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, make_model(tmp_path / "model")), ["backend=cpu"], environ={})
    root = make_node(tmp_path / "root", mem_available_kb=4 * 1024 * 1024)
    findings = preflight.run_checks(config, root, environ={})
    [ram] = preflight.failures(findings)
    assert ram.check == "ram" and "4.0 GiB RAM available" in ram.message
    assert "weights 15.0 GiB" in ram.message


def test_cache_dir_under_a_regular_file_fails_and_nothing_is_left_behind(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    config = config_for(tmp_path, cache_dir=str(tmp_path / "file" / "cache"))
    before = sorted(p.name for p in tmp_path.iterdir())
    [cache] = preflight.check_writes(config)  # local source: the model dir is only read, no volume check
    assert not cache.ok and cache.check == "cache-dir"
    assert cache.message == (
        f"server.cache_dir {tmp_path}/file/cache cannot be created: {tmp_path}/file is a regular file, not a directory"
    )
    assert cache.fix == f"move {tmp_path}/file away, or point server.cache_dir at a directory"
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_cache_dir_that_can_be_created_passes_without_creating_it(tmp_path: Path) -> None:
    config = config_for(tmp_path, cache_dir=str(tmp_path / "new" / "cache"))
    [cache] = preflight.check_writes(config)
    assert cache.ok and cache.message.startswith(
        f"server.cache_dir {tmp_path}/new/cache can be created (under {tmp_path},"
    )
    assert not (tmp_path / "new").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(preflight.WRITE_PROBE_PREFIX)]


def test_volume_under_a_regular_file_fails_before_a_fetch(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    sets = [f"model.path={tmp_path}/file/models", f"server.cache_dir={tmp_path}/cache"]
    cache, volume = preflight.check_writes(load_config(PROD_CONFIG, sets, environ={}))
    assert cache.ok and not volume.ok
    assert volume.message == (
        f"model.path {tmp_path}/file/models cannot be created: {tmp_path}/file is a regular file, not a directory: "
        "fetch cannot download the weights there"
    )
    assert cache.message.startswith(f"server.cache_dir {tmp_path}/cache can be created")


def test_default_cache_dir_is_named_as_the_default(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    sets = [f"model.path={tmp_path}/file/models", "server.cache_dir=null"]
    cache, _ = preflight.check_writes(load_config(PROD_CONFIG, sets, environ={}))
    assert cache.message.startswith(f"server.cache_dir (unset: <model.path>/cache) {tmp_path}/file/models/cache")


def test_report_round_trip(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    findings = preflight.run_checks(
        config, make_node(tmp_path / "root"), NPU_SMI / "910b-reference-vllm.txt", environ=CANN_ENV
    )
    path = tmp_path / "cache" / "preflight.json"
    preflight.save_report(findings, path)
    data = preflight.load_report(path)
    assert data["ok"] is False
    assert {f["check"] for f in data["findings"] if not f["ok"]} == {"card-busy", "hbm"}


# The known field failures: each on its own fixture tree, a finding with its cause and the fix.


def test_old_hdk_with_graph_capture_fails_naming_the_upgrade_and_eager(tmp_path: Path) -> None:
    config = config_for(tmp_path)  # the reference: server.compilation=PIECEWISE
    root = make_node(tmp_path / "root", driver_version="24.1.rc2")
    findings = preflight.run_checks(config, root, NPU_SMI / "910b3-2cards-idle-crlf.txt", environ=CANN_ENV)
    [driver] = preflight.failures(findings)
    assert (driver.check, driver.severity) == ("driver", "error")
    assert driver.message == (
        "driver (HDK) 24.1.rc2 (/usr/local/Ascend/driver/version.info) is older than 25.5.1, and "
        "server.compilation=PIECEWISE captures ACL graphs"
    )
    assert '"alloc sq cq fail"' in driver.cause and "PR #10555" in driver.cause
    assert "HDK 25.5.1 or later" in driver.fix and "--set server.enforce_eager=true" in driver.fix


@pytest.mark.parametrize("setting", ["server.enforce_eager=true", "server.compilation=NONE"])
def test_old_hdk_without_graph_capture_passes_saying_the_version(tmp_path: Path, setting: str) -> None:
    config = load_config(write_config(tmp_path, make_model(tmp_path / "model")), [setting], environ={})
    root = make_node(tmp_path / "root", driver_version="23.0.6")
    findings = preflight.run_checks(config, root, NPU_SMI / "910b3-2cards-idle-crlf.txt", environ=CANN_ENV)
    assert preflight.failures(findings) == []
    [version] = [f for f in by_check(findings, "driver") if "HDK" in f.message]
    assert version.ok and version.message.startswith("driver (HDK) 23.0.6 (/usr/local/Ascend/driver/version.info)")
    assert f"{setting} captures no ACL graphs" in version.message


def test_hdk_versions_in_the_formats_seen_compare_in_release_order() -> None:
    from llama_ascend.preflight.driver import hdk_version_key

    released = ["23.0.6", "24.1.rc2", "24.1.RC3", "25.2.3", "25.5.RC1", "25.5.0", "25.5.1", "26.0.0"]
    keys = [hdk_version_key(version) for version in released]
    assert None not in keys and all(older < newer for older, newer in itertools.pairwise(keys))
    assert hdk_version_key("24.1.rc2.1") == hdk_version_key("24.1.rc2")  # a hotfix suffix compares as its release
    for unreadable in ("unknown", "25.5", "V100R001C19SPC002B224", ""):
        assert hdk_version_key(unreadable) is None


def test_an_unreadable_hdk_version_with_graph_capture_is_a_warning_that_cannot_tell(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    root = make_node(tmp_path / "root", driver_version="V100R001C19")
    findings = preflight.run_checks(config, root, NPU_SMI / "910b3-2cards-idle-crlf.txt", environ=CANN_ENV)
    assert preflight.failures(findings) == []
    [version] = [f for f in by_check(findings, "driver") if not f.ok]
    assert version.severity == "warning"
    assert "V100R001C19" in version.message and "cannot tell whether it is older than HDK 25.5.1" in version.message


def test_a_cpu_quota_below_5_per_npu_on_arm_is_a_warning(tmp_path: Path) -> None:
    """A Kubernetes CPU limit of 4 on an ARM host: the binder gets its cores from the cpuset, the quota throttles them."""
    config = config_for(tmp_path)
    root = make_node(tmp_path / "root", cpu_max="400000 100000")
    findings = preflight.run_checks(
        config, root, NPU_SMI / "910b3-2cards-idle-crlf.txt", environ=CANN_ENV, machine="aarch64"
    )
    assert preflight.failures(findings) == []
    [binding] = by_check(findings, "cpu-binding")
    assert (binding.ok, binding.severity) == (False, "warning")
    assert binding.message == (
        "192 CPUs (Cpus_allowed_list 0-191 in /proc/self/status), 4 by cgroup cpu.max 400000 100000 for "
        "tensor_parallel_size=1 NPU(s): the quota is fewer than 5 CPUs per NPU (5 needed)"
    )
    assert "binds 5 CPUs to each NPU's worker on ARM hosts" in binding.cause and "throttled" in binding.cause
    assert binding.fix.startswith("give the container at least 5 CPUs")


def test_a_cpuset_below_5_per_npu_on_arm_is_a_warning_that_the_binding_fails(tmp_path: Path) -> None:
    config = config_for(tmp_path, tensor_parallel_size=2)
    root = make_node(tmp_path / "root", cards=(0, 1), cpus_allowed="0-3,8-11")
    findings = preflight.run_checks(
        config, root, NPU_SMI / "910b3-2cards-idle-crlf.txt", environ=CANN_ENV, machine="aarch64"
    )
    [binding] = by_check(findings, "cpu-binding")
    assert (binding.ok, binding.severity) == (False, "warning")
    assert binding.message.startswith("8 CPUs (Cpus_allowed_list 0-3,8-11 in /proc/self/status) for")
    assert binding.message.endswith("fewer than 5 per NPU (10 needed)")
    assert '"Insufficient CPUs for binding"' in binding.cause and "runs unbound" in binding.cause
    assert "at least 10 CPUs" in binding.fix and "server.tensor_parallel_size" in binding.fix
    assert binding.fix.endswith("--set server.additional_config.enable_cpu_binding=false")
    unbound = load_config(
        write_config(tmp_path, make_model(tmp_path / "model"), tensor_parallel_size=2),
        ["server.additional_config.enable_cpu_binding=false"],
        environ={},
    )
    [binding] = by_check(
        preflight.run_checks(unbound, root, NPU_SMI / "910b3-2cards-idle-crlf.txt", environ=CANN_ENV, machine="arm64"),
        "cpu-binding",
    )
    assert binding.ok and "enable_cpu_binding is off" in binding.message


def test_few_cpus_on_x86_need_nothing(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    root = make_node(tmp_path / "root", cpus_allowed="0-1", cpu_max="200000 100000")
    findings = preflight.run_checks(
        config, root, NPU_SMI / "910b3-2cards-idle-crlf.txt", environ=CANN_ENV, machine="x86_64"
    )
    [binding] = by_check(findings, "cpu-binding")
    assert binding.ok and binding.message.startswith("x86_64 host: vLLM-Ascend binds CPUs to NPUs only on ARM")


def test_dockers_default_shm_fails_tensor_parallel(tmp_path: Path) -> None:
    """TP 2 in a container with Docker's 64 MiB /dev/shm: vLLM's message queues alone need 664 MiB."""
    config = config_for(tmp_path, tensor_parallel_size=2)
    root = make_node(tmp_path / "root", cards=(0, 1), shm_size_kib=65536)
    findings = preflight.run_checks(config, root, NPU_SMI / "910b3-2cards-idle-crlf.txt", environ=CANN_ENV)
    [shm] = preflight.failures(findings)
    assert (shm.check, shm.severity) == ("shm", "error")
    # 16 MiB x 10 scheduler broadcast + 2 x 24 MiB x 10 worker outputs + 4 MiB x 6 TP broadcaster + 64 MiB margin
    assert shm.message == (
        "/dev/shm is 64 MiB (size=65536k in /proc/mounts); tensor_parallel_size=2 needs ~728 MiB (vLLM's message "
        "queues: scheduler broadcast 160 MiB + 2 worker outputs of 240 MiB + TP broadcaster 24 MiB; margin 64 MiB)"
    )
    assert "64 MiB (Docker" in shm.cause and "emptyDir" in shm.cause
    assert "docker run --shm-size=1g" in shm.fix and "shm.sizeLimit=1Gi" in shm.fix


def test_shm_need_follows_tp_and_the_chunk_size_the_server_gets(tmp_path: Path) -> None:
    one = config_for(tmp_path)
    root = make_node(tmp_path / "root", shm_size_kib=65536)
    [shm] = by_check(preflight.run_checks(one, root, NPU_SMI / "910b3-2cards-idle-crlf.txt", environ=CANN_ENV), "shm")
    assert shm.ok and "TP 1 runs its worker in-process, without message queues; margin 64 MiB" in shm.message
    eight = config_for(tmp_path, tensor_parallel_size=8)
    env = {**CANN_ENV, "VLLM_MQ_MAX_CHUNK_BYTES_MB": "64"}
    root = make_node(tmp_path / "root8", cards=range(8), shm_size_kib=2 * 1024 * 1024)
    [shm] = by_check(preflight.run_checks(eight, root, NPU_SMI / "910b3-8cards-one-busy.txt", environ=env), "shm")
    # 640 MiB broadcast + 8 x 240 MiB + 24 MiB + 64 MiB = 2648 MiB: a 2 GiB /dev/shm is short, 3 GiB is the fix
    assert not shm.ok and "needs ~2.6 GiB" in shm.message and "scheduler broadcast 640 MiB" in shm.message
    assert "--shm-size=3g" in shm.fix


def test_soft_partitioned_npu_with_piecewise_fails(tmp_path: Path) -> None:
    """vllm-ascend #8585: vCANN-RT soft partitioning (the whole card mounted, libvruntime.so preloaded) with PIECEWISE."""
    config = config_for(tmp_path)
    root = make_node(tmp_path / "root", soft_partition=True)
    findings = preflight.run_checks(config, root, NPU_SMI / "910b3-2cards-idle-crlf.txt", environ=CANN_ENV)
    [vnpu] = preflight.failures(findings)
    assert (vnpu.check, vnpu.severity) == ("vnpu", "error")
    assert vnpu.message == (
        "soft-partitioned NPU (vCANN-RT: /etc/ld.so.preload loads /opt/enpu/vcann-rt/lib/libvruntime.so) with "
        "server.compilation=PIECEWISE"
    )
    assert "does not support NPU soft partitioning with PIECEWISE (issue #8585" in vnpu.cause
    assert "2048 streams" in vnpu.cause and "one stream per graph" in vnpu.cause
    assert "--set server.compilation=FULL_DECODE_ONLY" in vnpu.fix and "--set server.enforce_eager=true" in vnpu.fix


def test_soft_partitioned_npu_with_full_decode_only_passes(tmp_path: Path) -> None:
    config = config_for(tmp_path, compilation="FULL_DECODE_ONLY")
    root = make_node(tmp_path / "root", soft_partition=True)
    findings = preflight.run_checks(config, root, NPU_SMI / "910b3-2cards-idle-crlf.txt", environ=CANN_ENV)
    [vnpu] = by_check(findings, "vnpu")
    assert vnpu.ok and "with server.compilation=FULL_DECODE_ONLY: not PIECEWISE" in vnpu.message


def test_a_hardware_vnpu_with_piecewise_is_a_warning(tmp_path: Path) -> None:
    """vNPU 100 mounted as /dev/davinci100 (the Ascend Docker Runtime with ASCEND_RUNTIME_OPTIONS=VIRTUAL)."""
    config = config_for(tmp_path)
    root = make_node(tmp_path / "root", cards=(100,))
    env = {**CANN_ENV, "ASCEND_VISIBLE_DEVICES": "100"}
    findings = preflight.run_checks(
        config, root, NPU_SMI / "910b3-no-process-table.txt", environ=env, annotations_path=tmp_path / "none"
    )
    [vnpu] = by_check(findings, "vnpu")
    assert (vnpu.ok, vnpu.severity) == (False, "warning")
    assert vnpu.message.startswith("vNPU(s) 100 (hardware partitions") and "#8585" in vnpu.cause
    assert "server.compilation=FULL_DECODE_ONLY" in vnpu.fix


def test_a_container_with_only_vdavinci_nodes_is_not_reported_as_cardless(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    root = make_node(tmp_path / "root", cards=(), vnpus=(100,))
    findings = preflight.run_checks(config, root, NPU_SMI / "910b3-no-process-table.txt", environ=CANN_ENV)
    assert "no /dev/davinciN card is visible" not in " ".join(f.message for f in findings)
    [nodes] = [f for f in by_check(findings, "device-nodes") if not f.ok]
    assert (nodes.severity, nodes.message) == (
        "warning",
        "no /dev/davinciN, but /dev/vdavinci100: vNPU(s) mounted under the host's name",
    )
    assert nodes.fix.startswith("mount it as they do: --device /dev/vdavinci100:/dev/davinci100")
    assert [f.ok for f in by_check(findings, "tensor-parallel")] == [True]
    [vnpu] = by_check(findings, "vnpu")
    assert vnpu.severity == "warning" and vnpu.message.startswith("vNPU(s) 100")


FIELD_FAILURES = {
    "old-hdk": ({}, {"driver_version": "24.1.rc2"}, NPU_SMI / "910b3-2cards-idle-crlf.txt", "driver", 3),
    "few-cpus-arm": ({}, {"cpu_max": "400000 100000"}, NPU_SMI / "910b3-2cards-idle-crlf.txt", "cpu-binding", 0),
    "small-shm": (
        {"tensor_parallel_size": 2},
        {"cards": (0, 1), "shm_size_kib": 65536},
        NPU_SMI / "910b3-2cards-idle-crlf.txt",
        "shm",
        3,
    ),
    "vnpu-piecewise": ({}, {"soft_partition": True}, NPU_SMI / "910b3-2cards-idle-crlf.txt", "vnpu", 3),
}


@pytest.mark.parametrize("name", FIELD_FAILURES)
def test_findings_table_of_each_field_failure(tmp_path: Path, name: str) -> None:
    """`llama-ascend preflight` on each fixture as an ARM host shows (pytest -s) the table an operator gets."""
    server, node, npu_smi, check, code = FIELD_FAILURES[name]
    config = write_config(tmp_path, make_model(tmp_path / "model"), cache_dir=str(tmp_path / "cache"), **server)
    root = make_node(tmp_path / "root", **node)
    done = cli(
        *("preflight", "--config", str(config), "--root", str(root), "--npu-smi-output", str(npu_smi)),
        *("--machine", "aarch64"),
        env={"ASCEND_TOOLKIT_HOME": TOOLKIT, "COLUMNS": "150"},
    )
    print(f"\n--- {name} ---\n{done.stdout}{done.stderr}")
    assert done.returncode == code, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith(f"│ {check} ")]
    assert any(("FAIL" if code else "warn") in row for row in rows), done.stdout


# The real entry point.


def test_cli_dev_profile_passes_on_this_machine(standin_model_dir: Path) -> None:
    done = cli("preflight", "--config", str(DEV_CONFIG), "--set", f"server.port={free_port()}")
    assert done.returncode == 0, done.stdout + done.stderr
    for check in ("port", "model-files", "weights", "ram", "kv-cache"):
        assert check in done.stdout


def test_cli_lists_all_failures_and_exits_3(tmp_path: Path) -> None:
    config = write_config(tmp_path, make_model(tmp_path / "model"))
    root = make_node(tmp_path / "root", cards=(0,), management=False)
    done = cli(
        "preflight",
        "--config",
        str(config),
        "--root",
        str(root),
        "--npu-smi-output",
        str(NPU_SMI / "910b-reference-vllm.txt"),
        "--json",
        env={"ASCEND_TOOLKIT_HOME": TOOLKIT},
    )
    assert done.returncode == 3, done.stderr
    data = json.loads(done.stdout)
    failed = {f["check"] for f in data["findings"] if not f["ok"] and f["severity"] == "error"}
    assert failed == {"device-nodes", "card-busy", "hbm"}
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert "5 check(s) failed" in errors[0]  # three device nodes, the busy card, HBM
    assert len(errors) == 6


def test_cli_table_and_summary(tmp_path: Path) -> None:
    config = write_config(tmp_path, make_model(tmp_path / "model"))
    root = make_node(tmp_path / "root", cards=(0,))
    report = tmp_path / "report.json"
    done = cli(
        "preflight",
        "--config",
        str(config),
        "--root",
        str(root),
        "--npu-smi-output",
        str(NPU_SMI / "910b-reference-vllm.txt"),
        "--report",
        str(report),
        env={"ASCEND_TOOLKIT_HOME": TOOLKIT, "COLUMNS": "200"},
    )
    assert done.returncode == 3
    assert "VLLMEngineCor" in done.stdout and "FAIL" in done.stdout
    assert done.stderr.strip().splitlines()[-1].startswith("error: preflight: 2 check(s) failed (card-busy, hbm)")
    assert preflight.load_report(report)["ok"] is False


def test_a_variable_vllm_ascend_refuses_from_the_containers_environment_fails_preflight(tmp_path: Path) -> None:
    """The config check sees only `env:`; preflight sees what the container brings too."""
    config = config_for(tmp_path)
    root = make_node(tmp_path / "root", cards=(0, 1))
    smi = NPU_SMI / "910b3-2cards-idle-crlf.txt"
    [clean] = by_check(preflight.run_checks(config, root, smi, environ=CANN_ENV), "environment")
    assert clean.ok
    findings = preflight.run_checks(config, root, smi, environ={**CANN_ENV, "ASCEND_LAUNCH_BLOCKING": "1"})
    [blocking] = preflight.failures(by_check(findings, "environment"))
    assert blocking.message.startswith("ASCEND_LAUNCH_BLOCKING=1 with ACL graphs (server.compilation PIECEWISE)")
    assert "container's or the shell's environment" in blocking.cause
    eager = config_for(tmp_path, enforce_eager=True)
    assert by_check(
        preflight.run_checks(eager, root, smi, environ={**CANN_ENV, "ASCEND_LAUNCH_BLOCKING": "1"}), "environment"
    )[0].ok
