"""Each card's health, who else holds it, and whether the model fits its HBM at gpu_memory_utilization."""

from __future__ import annotations

import math

from llama_ascend import npu_smi
from llama_ascend.config import Config
from llama_ascend.preflight.findings import Finding, Severity, fail, ok
from llama_ascend.preflight.sizing import ASCEND_RUNTIME_OVERHEAD, MiB, ModelFootprint, gib

# Without a process table, HBM used beyond this share of the card is taken to be held by someone else
# (an idle 910B shows ~3.1-3.4 GB of 64 GB used by firmware).
IDLE_RESERVE_SHARE = 0.08


def reserved_mb(chip: npu_smi.Chip, processes: list[npu_smi.Process] | None) -> tuple[int, int]:
    """(HBM the firmware keeps at idle, HBM held by processes) in MB."""
    used = chip.hbm_used_mb or 0
    if processes is None:
        reserve = min(used, int((chip.hbm_total_mb or 0) * IDLE_RESERVE_SHARE))
        return reserve, used - reserve
    held = sum(p.memory_mb or 0 for p in processes)
    return max(used - held, 0), held


def check_cards(config: Config, cards: list[int], info: npu_smi.NpuSmiInfo, fp: ModelFootprint) -> list[Finding]:
    findings: list[Finding] = []
    for index, card in enumerate(cards):
        chip = info.chip_by_phy_id(card)
        if chip is None and len(info.chips) == len(cards):
            chip = info.chips[index]  # npu-smi in a container may number the mounted cards itself
        if chip is None:
            findings.append(
                fail(
                    "npu-smi",
                    f"npu-smi does not list card {card} (it shows {', '.join(str(c.phy_id) for c in info.chips)})",
                    cause="the card is mounted but the driver does not see it (reset, or a fault)",
                    fix=f"check `npu-smi info` and `dmesg` on the host for card {card}",
                )
            )
            continue
        label = f"card {card} ({chip.name})"
        if chip.healthy:
            findings.append(ok("card-health", f"{label} health OK"))
        else:
            findings.append(
                fail(
                    "card-health",
                    f"{label} health is {chip.health}",
                    cause="the card reports an alarm",
                    fix=f"`npu-smi info -t health -i {chip.npu_id} -c {chip.chip_id}` shows the error code; "
                    "reset the card or schedule on another node",
                )
            )
        processes = info.processes_on(chip)
        if processes:
            listed = ", ".join(f"pid {p.pid} ({p.name or 'unnamed'}, {p.memory_mb} MB)" for p in processes)
            findings.append(
                fail(
                    "card-busy",
                    f"{label} is held by {listed}",
                    cause="another process or container is using the card (npu-smi's process table)",
                    fix="stop that workload (`npu-smi info` on the host names the pid; `kubectl get pods -o wide` "
                    "the pod) or schedule on a free card",
                )
            )
        elif processes is None:
            findings.append(
                fail(
                    "card-busy",
                    f"{label}: npu-smi shows no process table; cannot tell if another workload holds the card",
                    severity="warning",
                )
            )
        else:
            findings.append(ok("card-busy", f"{label} has no running process"))

        if chip.hbm_total_mb is None:
            findings.append(fail("hbm", f"{label}: npu-smi shows no HBM reading", severity="warning"))
            continue
        findings += check_hbm(config, label, chip, processes, fp)
    return findings


def util_up(fraction: float) -> float:
    return math.ceil(fraction * 100 - 1e-9) / 100


def smallest_tp(fp: ModelFootprint, tokens: int, room: float, above: int) -> int | None:
    """The smallest tensor_parallel_size over `above` whose per-card weights + KV for `tokens` + runtime fit `room`."""
    for tp in (1, 2, 4, 8):
        if tp > above and (fp.weight_bytes + fp.kv_bytes(tokens)) / tp + ASCEND_RUNTIME_OVERHEAD <= room:
            return tp
    return None


def check_hbm(
    config: Config, label: str, chip: npu_smi.Chip, processes: list[npu_smi.Process] | None, fp: ModelFootprint
) -> list[Finding]:
    """HBM against the model: vLLM stops at start when free HBM is below its gpu_memory_utilization share, or when
    that share cannot hold the weights plus one max_model_len sequence of KV cache (plus the runtime's margin).
    Advice never proposes a utilization below what holds the weights; when none can, it says what else would."""
    tp, util = config.server.tensor_parallel_size, config.server.gpu_memory_utilization
    length, seqs = config.server.max_model_len, config.server.max_num_seqs
    total = (chip.hbm_total_mb or 0) * MiB
    reserve_mb, held_mb = reserved_mb(chip, processes)
    usable = total - reserve_mb * MiB  # what torch-npu reports as the card's total
    budget = usable * util  # what vLLM may take
    free = total - (chip.hbm_used_mb or 0) * MiB
    weights = fp.weight_bytes / tp
    per_token = fp.kv_bytes_per_token / tp
    least = weights + per_token * length + ASCEND_RUNTIME_OVERHEAD  # below this vLLM refuses to start
    need = weights + per_token * length * seqs + ASCEND_RUNTIME_OVERHEAD  # every sequence at full length
    per_card = f", per card at TP={tp}" if tp > 1 else ""
    least_text = (
        f"~{gib(least)} (weights {gib(weights)} + one {length}-token sequence's KV cache {gib(per_token * length)} "
        f"+ runtime {gib(ASCEND_RUNTIME_OVERHEAD)}{per_card})"
    )
    breakdown = (
        f"weights {gib(weights)} + KV cache for {seqs} x {length} tokens {gib(per_token * length * seqs)} + runtime "
        f"{gib(ASCEND_RUNTIME_OVERHEAD)}{per_card}"
    )
    summary = (
        f"{label}: {chip.hbm_total_mb} MB on the label, {reserve_mb} MB kept by the firmware at idle, so "
        f"torch sees {gib(usable)}; gpu_memory_utilization={util} lets vLLM take {gib(budget)}"
    )
    short: Severity = "warning" if fp.assumed else "error"  # an assumed size cannot fail the node
    findings = []

    if free < budget:
        most = math.floor(free / usable * 100) / 100 - 0.01  # the largest share the free HBM gives, with a margin
        lowest = util_up(least / usable)
        if most >= lowest:
            room = int((most * usable - weights - ASCEND_RUNTIME_OVERHEAD) / per_token)
            fix = (
                f"free the card, or lower server.gpu_memory_utilization to {most:.2f}: that still holds the weights "
                f"and ~{room} tokens of KV cache ({room // length} sequence(s) of {length} tokens at once)"
            )
        else:
            fix = (
                f"free the card (stop the workload that holds it) or schedule on a free card; no "
                f"gpu_memory_utilization fits: the {gib(free)} free cannot hold {least_text}"
            )
            wider = smallest_tp(fp, length, free, tp)
            if wider:
                fix += (
                    f"; or tensor_parallel_size={wider} on {wider} cards with this much free each "
                    f"(~{gib(fp.weight_bytes / wider + fp.kv_bytes(length) / wider + ASCEND_RUNTIME_OVERHEAD)} "
                    "per card)"
                )
        findings.append(
            fail(
                "hbm",
                f"{summary}, but only {gib(free)} is free ({held_mb} MB held by other processes){fp.note}",
                cause="another workload holds HBM on this card; vLLM stops at start when free memory is below "
                "its gpu_memory_utilization share",
                fix=fix,
            )
        )

    if least > budget:
        if least <= usable:
            fix = f"raise server.gpu_memory_utilization to {util_up(least / usable):.2f} or more" + (
                f" ({util_up(need / usable):.2f} holds all {seqs} sequences at full length)" if need <= usable else ""
            )
            fix += ", or lower server.max_model_len, or raise server.tensor_parallel_size"
        else:
            options = []
            wider = smallest_tp(fp, length, budget, tp)
            if wider:
                per = fp.weight_bytes / wider + fp.kv_bytes(length) / wider + ASCEND_RUNTIME_OVERHEAD
                options.append(f"raise server.tensor_parallel_size to {wider} (~{gib(per)} per card)")
            shorter = int((budget - weights - ASCEND_RUNTIME_OVERHEAD) / per_token) // 256 * 256
            if shorter > 0:
                options.append(f"lower server.max_model_len to {shorter} or less")
            fix = "even gpu_memory_utilization=1.0 cannot hold that: " + (
                " or ".join(options) if options else "use a card with more HBM or a smaller model"
            )
        findings.append(
            fail(
                "hbm",
                f"{summary}; the model needs at least {least_text}{fp.note}",
                cause="vLLM refuses to start when its share cannot hold the weights and one max_model_len sequence "
                "(a '64 GB' 910B gives torch ~61 GiB)",
                fix=fix,
                severity=short,
            )
        )
    elif need > budget:
        fit = int((budget - weights - ASCEND_RUNTIME_OVERHEAD) / (per_token * length))
        raise_to = util_up(need / usable)
        findings.append(
            fail(
                "hbm",
                f"{summary}; {seqs} sequences of {length} tokens need ~{gib(need)} ({breakdown}){fp.note}: vLLM "
                f"starts, but only {fit} of them fit at full length at once",
                fix=(f"raise server.gpu_memory_utilization to {raise_to:.2f}, or " if raise_to <= 1 else "")
                + "lower server.max_num_seqs or server.max_model_len, or raise server.tensor_parallel_size",
                severity="warning",
            )
        )
    elif free >= budget:
        findings.append(ok("hbm", f"{summary} >= ~{gib(need)} needed ({breakdown}){fp.note}"))
    return findings
