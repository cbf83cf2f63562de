"""Every check for the configured backend, in order."""

from __future__ import annotations

import os
import platform
from collections.abc import Collection, Mapping
from pathlib import Path

from llama_ascend import devices, npu_smi
from llama_ascend.config import Config
from llama_ascend.preflight.cards import check_management_devices, check_tp, check_vnpu, select_cards
from llama_ascend.preflight.cpu import check_ram
from llama_ascend.preflight.driver import check_cann, check_driver
from llama_ascend.preflight.environment import check_environment
from llama_ascend.preflight.findings import Finding, fail, ok
from llama_ascend.preflight.hbm import check_cards
from llama_ascend.preflight.host import check_cpu_binding, check_shm
from llama_ascend.preflight.node import check_port, check_writes
from llama_ascend.preflight.sizing import footprint
from llama_ascend.preflight.weights import check_model_files, check_weights


def run_checks(
    config: Config,
    root: str | os.PathLike[str] = "/",
    npu_smi_output: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    annotations_path: str | os.PathLike[str] | None = None,
    skip: Collection[str] = (),
    machine: str | None = None,
) -> list[Finding]:
    """Run every check for `config.backend` and return all findings (passes, warnings and failures).

    `npu_smi_output`: a saved `npu-smi info` output instead of running npu-smi. `environ`: the environment the
    server will get (default: this process's, plus the config's `env`). `skip`: check names to leave out, e.g.
    {"weights"} when serve downloads them afterwards, or {"port"} when the server already runs. `machine`: the CPU
    architecture (default: this one's, platform.machine()), for checks on a fake tree of another host.
    """
    rooted = Path(root)
    env = {**(os.environ if environ is None else environ), **config.env}
    findings: list[Finding] = []
    if "port" not in skip:
        findings.append(check_port(config))
    if "model-files" not in skip:
        findings.append(check_model_files(config))
    if "weights" not in skip:
        findings.append(check_weights(config))
    findings += check_writes(config, skip)

    if config.backend == "cpu":
        if "ram" not in skip:
            findings += check_ram(config, rooted, env)
        return findings

    findings += check_management_devices(rooted)
    cards, card_findings = select_cards(config, rooted, env, annotations_path)
    findings += card_findings
    if devices.present_devices(rooted) or cards:  # with no card at all, device-nodes already says so
        findings.append(check_tp(config, cards, rooted))
    if cards:
        findings.append(check_vnpu(config, rooted, cards))
    findings += check_driver(rooted, config)
    findings += check_cann(rooted, env)
    findings += check_environment(config, env)
    findings.append(check_cpu_binding(config, rooted, machine or platform.machine()))
    findings.append(check_shm(config, rooted, env))
    try:
        info = npu_smi.read(npu_smi_output)
    except npu_smi.NpuSmiError as exc:
        findings.append(fail("npu-smi", str(exc), cause=exc.cause, fix=exc.fix))
        return findings
    source = f"{npu_smi_output}" if npu_smi_output else "npu-smi info"
    findings.append(
        ok("npu-smi", f"{source}: {len(info.chips)} chip(s)" + (f", npu-smi {info.version}" if info.version else ""))
    )
    findings += check_cards(config, cards, info, footprint(config))
    return findings
