"""Can this node run the deployment? Every check runs and every failure is reported, with its likely cause and fix.

`serve` runs these before it execs vLLM (a failed start on an NPU costs minutes); `llama-ascend preflight` runs
them alone. `root` re-roots the filesystem checks (/dev, the driver, CANN, /proc, /sys/fs/cgroup, /etc/ld.so.preload)
for tests on fake trees; the model directory, the cache dir, the volume and the port are always the real ones.
Nothing here writes: the write checks create and remove one probe file.

One module per check family: `node` (the port, what serve writes), `weights`, `cpu` (RAM), `cards` (device nodes,
the allocation, logical ids, TP, vNPUs), `driver` (the driver, its HDK version, and CANN), `host` (CPUs for
vLLM-Ascend's CPU binding, /dev/shm), `hbm` (health, other holders, the HBM budget); `sizing` says how big the model
is, `capture` whether the config captures ACL graphs, and `findings` holds the outcome type and the report; `run`
runs them all.
"""

from llama_ascend.preflight.findings import (
    Finding,
    failures,
    load_report,
    raise_on_failure,
    report,
    report_path,
    save_report,
)
from llama_ascend.preflight.node import (
    WRITE_PROBE_PREFIX,
    check_port,
    check_writes,
    require_writable_dir,
    require_writable_file,
)
from llama_ascend.preflight.run import run_checks
from llama_ascend.preflight.sizing import footprint
from llama_ascend.preflight.weights import check_model_files, check_weights

__all__ = [
    "WRITE_PROBE_PREFIX",
    "Finding",
    "check_model_files",
    "check_port",
    "check_weights",
    "check_writes",
    "failures",
    "footprint",
    "load_report",
    "raise_on_failure",
    "report",
    "report_path",
    "require_writable_dir",
    "require_writable_file",
    "run_checks",
    "save_report",
]
