"""validate → render → check the node and the weights → exec the vLLM OpenAI server (nothing of ours stays running)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from llama_ascend import ascend_env, devices, fetch, preflight
from llama_ascend.config import Config
from llama_ascend.launch import Launch, environment, exec_launch
from llama_ascend.render import CACHE_DIR_VARIABLES, render

log = logging.getLogger(__name__)

CPU_BANNER = """
################################################################################
#  CPU STAND-IN: no Ascend NPU here. Serving {model_dir}
#  on vLLM's CPU backend as '{served_name}' (a small model for development and CI),
#  NOT Llama-3.1-8B-Instruct on a 910B. Production: --config config/llama-3.1-8b-instruct.yaml
################################################################################
"""


def create_cache_dirs(launch: Launch) -> None:
    for name in CACHE_DIR_VARIABLES:
        Path(launch.env[name]).mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True)
class Prepared:
    launch: Launch  # what `render` gives
    env: dict[str, str]  # the server's whole environment
    added: dict[str, str]  # what serve adds to the caller's environment beyond `render`: CANN, device variables
    weights: str  # what serve fetched, or would fetch (--dry-run)
    findings: list[preflight.Finding] = field(default_factory=list)

    def command(self) -> str:
        """The exec as a shell command: render's variables plus what serve adds (secrets by name), then argv."""
        extra = {k: v for k, v in self.added.items() if k not in self.launch.env and k not in self.launch.secret_env}
        return Launch(self.launch.argv, {**extra, **self.launch.env}, self.launch.secret_env).shell()


def prepare(config: Config, environ: Mapping[str, str] | None = None, *, dry_run: bool = False) -> Prepared:
    """Everything `serve` does before exec: the environment, the weights, the preflight checks, the cache dirs.

    `dry_run`: the same decisions with no effect: nothing fetched, no directory created, no report written (the
    write checks create and remove one probe file); missing weights are reported as what would be fetched.
    """
    caller = dict(os.environ if environ is None else environ)
    environ = dict(caller)
    if config.backend == "ascend":
        # The CANN image's own ENTRYPOINT sources set_env.sh; ours bypasses it, so the server gets it from here.
        environ = ascend_env.load(environ)
        environ.update(devices.runtime_device_env(environ))
    launch = render(config, python=sys.executable)
    env = environment(launch, environ)
    what = f"{config.model.source} {config.model.id}@{config.model.effective_revision}"
    skip: tuple[str, ...] = ()
    if config.model.source == "local":
        if not fetch.is_complete(config):
            fetch.fetch(config)  # for `local` only a verification (reads); raises saying what is wrong
        weights = f"local model dir {config.model_dir}, verified"
    elif fetch.is_complete(config):
        weights = f"{what} complete in {config.model_dir}: nothing to fetch"
    elif dry_run:
        weights = f"would fetch {what} into {config.model_dir} (then preflight checks the files)"
        skip = ("model-files", "weights")
    else:
        # Before a 16 GB download: the caches and the volume can be written.
        preflight.raise_on_failure(preflight.check_writes(config))
        weights = fetch.fetch(config).summary().removeprefix("fetch: ")
    findings = preflight.run_checks(config, environ=env, skip=skip)
    if not dry_run and not any(f.check == "cache-dir" and f.failed for f in findings):
        preflight.save_report(findings, preflight.report_path(config))
    preflight.raise_on_failure(findings)
    if not dry_run:
        create_cache_dirs(launch)
    added = {k: v for k, v in environ.items() if caller.get(k) != v}
    return Prepared(launch, env, added, weights, findings)


def dry_run_text(prepared: Prepared) -> str:
    """What `serve --dry-run` prints: the weights, the preflight outcome and the exact command, as a shell script."""
    findings = prepared.findings
    warnings = [f for f in findings if not f.ok and not f.failed]
    lines = [
        "# llama-ascend serve --dry-run: nothing was fetched, created or written",
        f"# weights: {prepared.weights}",
        f"# preflight: {sum(f.ok for f in findings)} check(s) passed, {len(warnings)} warning(s)",
        *(f"#   warning: {f.describe()}" for f in warnings),
    ]
    extra = sorted(k for k in prepared.added if k not in prepared.launch.env and k not in prepared.launch.secret_env)
    if extra:
        lines.append(f"# differs from `llama-ascend render`: serve adds {', '.join(extra)} to the caller's environment")
    else:
        lines.append("# the same command as `llama-ascend render`, in the caller's environment")
    return "\n".join([*lines, prepared.command()])


def exec_server(config: Config, launch: Launch, env: dict[str, str]) -> None:
    if config.backend == "cpu":
        print(CPU_BANNER.format(model_dir=config.model_dir, served_name=config.model.served_name), file=sys.stderr)
    exec_launch(launch, env)
