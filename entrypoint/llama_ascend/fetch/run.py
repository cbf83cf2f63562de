"""`fetch()`: the whole step, from the complete-cache fast path to the lease, the listing, the download, the checks
and the commit. The hub clients are imported only when something has to be downloaded."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
import time

from llama_ascend.config import Config
from llama_ascend.durable import read_json
from llama_ascend.errors import ConfigError, LlamaAscendError, file_in_the_way
from llama_ascend.fetch.hub import Source, client_environment
from llama_ascend.fetch.layout import MARKER, Layout, is_complete, same_model, same_selection, selected, stat_matches
from llama_ascend.fetch.metrics import write_metrics
from llama_ascend.fetch.plan import Flusher, check_disk, commit, make_plan, remove_partials
from llama_ascend.fetch.progress import Progress
from llama_ascend.fetch.results import FetchFailed, FetchResult, config_error, gb
from llama_ascend.fetch.settings import ENV_LEASE_STALE, ENV_LOG_INTERVAL, ENV_OFFLINE, env_number
from llama_ascend.fetch.verify import content_matches, local_problems, weights_problems
from llama_ascend.lease import Lease, LeaseLost, describe
from llama_ascend.options import env_flag
from llama_ascend.paths import expand_path

log = logging.getLogger("llama_ascend.fetch")


def _progress_mode(progress: bool) -> str:
    if not progress:
        return "off"
    return "bar" if sys.stderr.isatty() else "log"


def _complete_result(config: Config, started: float, waited: float = 0.0) -> FetchResult:
    marker = read_json(Layout(config.model_dir).marker) or {}
    files = marker.get("files") or {}
    return FetchResult(
        config.model_dir,
        config.model.source,
        config.model.id,
        config.model.effective_revision,
        marker.get("commit"),
        len(files),
        sum(int(r.get("size", 0)) for r in files.values()),
        0,
        time.monotonic() - started,
        True,
        waited,
    )


def _verify_local(config: Config, started: float) -> FetchResult:
    directory = config.model_dir
    problems = local_problems(directory)
    if problems:
        raise ConfigError(f"model.path: {directory} is not a usable model dir: " + "; ".join(problems))
    files = [p for p in directory.rglob("*") if p.is_file()]
    return FetchResult(
        directory,
        "local",
        str(directory),
        "",
        None,
        len(files),
        sum(p.stat().st_size for p in files),
        0,
        time.monotonic() - started,
        True,
    )


def _verify_offline(config: Config, started: float) -> FetchResult:
    """--offline: accept the marker when the files still match it (re-hashing only files whose stat changed)."""
    layout = Layout(config.model_dir)
    what = f"{config.model.id}@{config.model.effective_revision}"
    marker = read_json(layout.marker)
    if marker is None or not same_model(marker, config):
        raise FetchFailed(
            f"offline: the weights of {what} are not complete in {layout.final} (no valid {MARKER}); "
            "run `llama-ascend fetch` with network access first, or drop --offline / $LLAMA_ASCEND_OFFLINE",
            "offline",
        )
    for path, rec in sorted(marker["files"].items()):
        if not stat_matches(layout.final, path, rec) and not content_matches(layout.final / path, rec):
            raise FetchFailed(
                f"offline: {what}: {layout.final / path} is missing or changed since it was verified; "
                "run `llama-ascend fetch` with network access to repair it",
                "offline",
            )
    if not same_selection(marker, config):
        log.warning(
            "offline: %s was fetched with allow_patterns=%s ignore_patterns=%s, not the configured ones; using it as it is",
            what,
            marker.get("allow_patterns"),
            marker.get("ignore_patterns"),
        )
    return _complete_result(config, started)


def fetch(config: Config, offline: bool = False, progress: bool = True) -> FetchResult:
    """Make the weights the config names complete in `config.model_dir`, downloading only what is missing.

    A complete dir returns at once (marker check, no network). `offline` (or $LLAMA_ASCEND_OFFLINE=1,
    $HF_HUB_OFFLINE=1 for HuggingFace) never touches the network and fails unless the weights are complete.
    """
    started = time.monotonic()
    if config.model.source == "local":
        return _verify_local(config, started)
    if is_complete(config):
        return _complete_result(config, started)
    if offline or env_flag(ENV_OFFLINE) or (config.model.source == "huggingface" and env_flag("HF_HUB_OFFLINE")):
        return _verify_offline(config, started)
    result: FetchResult | None = None
    failure: str | None = None
    try:
        result = _fetch_online(config, progress, started)
        return result
    except LeaseLost:
        failure = "lease"
        raise FetchFailed(
            f"{config.model_dir}: another fetcher took over while this one stalled; run fetch again", "lease"
        ) from None
    except LlamaAscendError as exc:
        failure = getattr(exc, "reason", "config" if isinstance(exc, ConfigError) else "other")
        raise
    except OSError as exc:  # the volume: read-only, not ours, full, gone
        disk = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        failure = "disk" if disk else "volume"
        where = f" ({exc.filename})" if exc.filename else ""
        what = f"{config.model.id}@{config.model.effective_revision}"
        root = expand_path(config.model.path)
        fix = "free space or enlarge the volume" if disk else "model.path must be a writable volume for this user"
        if exc.errno in (errno.ENOTDIR, errno.EEXIST) and (blocker := file_in_the_way(exc.filename or root)):
            fix = (
                f"{blocker} is a regular file where a directory is needed: move it away, or point model.path elsewhere"
            )
        message = f"{what}: cannot write the weights under {root}: {exc.strerror or exc}{where}; {fix}"
        raise FetchFailed(message, failure) from None
    except BaseException:
        failure = "interrupted"
        raise
    finally:
        if result is None or not result.already_complete:
            with contextlib.suppress(Exception):
                write_metrics(config, time.monotonic() - started, result, failure)


def _stop_writing(layout: Layout) -> None:
    """This process stalled (e.g. a paused VM) longer than the lease timeout and another fetcher took over: stop at
    once, from the heartbeat thread, so that only one process writes into the .partial dir."""
    print(
        f"error: {layout.final}: another fetcher took the lease over while this one was stalled; stopping so that "
        "only one writes (the other one completes the fetch)",
        file=sys.stderr,
        flush=True,
    )
    os._exit(1)


def _fetch_online(config: Config, progress: bool, started: float) -> FetchResult:
    layout = Layout(config.model_dir)
    what = f"{config.model.source} {config.model.id}@{config.model.effective_revision}"
    stale = env_number(ENV_LEASE_STALE, 60)
    heartbeat = max(0.05, min(5.0, stale / 6))
    lease = Lease(
        layout.lease,
        purpose=f"fetch {what}",
        stale_after=stale,
        heartbeat=heartbeat,
        on_lost=lambda: _stop_writing(layout),
    )
    layout.final.parent.mkdir(parents=True, exist_ok=True)
    lease.acquire(on_wait=lambda holder: log.info("%s is being fetched by %s; waiting for it", what, describe(holder)))
    try:
        if is_complete(config):  # the fetcher we waited for finished it
            log.info("%s was completed by another fetcher while we waited (%.1f s)", what, lease.waited)
            return _complete_result(config, started, lease.waited)
        with client_environment(config):
            source = make_source(config)
            manifest = source.manifest()
            files = selected(manifest.files, config.model.allow_patterns, config.model.ignore_patterns)
            if not files:
                raise config_error(
                    f"{source.what}: none of its {len(manifest.files)} files match model.allow_patterns "
                    f"{config.model.allow_patterns} (minus model.ignore_patterns)",
                    "config",
                )
            if lease.took_over_live and layout.staging.is_dir():  # its holder may wake up and write to its open files
                log.warning("%s: the previous fetcher may be alive but stalled; not resuming its partial files", what)
                remove_partials(layout.staging, {f.path for f in files})  # new files, new inodes
            plan = make_plan(layout, manifest, files)
            check_disk(source.what, layout, plan)
            missing = plan.missing
            present = plan.total - sum(f.size for f in missing) + sum(plan.partial.values())
            log.info(
                "%s: %d files, %s; %d to download (%s%s) into %s",
                what,
                len(files),
                gb(plan.total),
                len(missing),
                gb(plan.need),
                f", resuming {gb(sum(plan.partial.values()))}" if plan.partial else "",
                layout.final,
            )
            bar = Progress(
                f"fetch {config.model.id}",
                plan.total,
                present,
                _progress_mode(progress),
                env_number(ENV_LOG_INTERVAL, 15),
            )
            if missing:
                try:
                    with bar, Flusher(layout.staging):
                        source.download(missing, layout.staging, bar, dict(plan.partial))
                except FetchFailed as exc:
                    if exc.reason == "disk":
                        remove_partials(layout.staging, {f.path for f in files})
                    raise
            fetched = plan.staged | {f.path for f in missing}
            locate = lambda p: (layout.staging if p in fetched else layout.final) / p  # noqa: E731
            problems = weights_problems(locate, [f.path for f in files])
            if problems:
                raise FetchFailed(
                    f"{source.what}: the fetched weights are not loadable: " + "; ".join(problems), "integrity"
                )
            commit(layout, plan, manifest, config, lease)
    finally:
        lease.release()
    seconds = time.monotonic() - started
    return FetchResult(
        layout.final,
        config.model.source,
        config.model.id,
        config.model.effective_revision,
        manifest.commit,
        len(files),
        plan.total,
        bar.moved,
        seconds,
        False,
        lease.waited,
        len(missing),
    )


def make_source(config: Config) -> Source:
    from llama_ascend.fetch.hub import resolve_token

    token = resolve_token(config)
    if config.model.source == "modelscope":
        from llama_ascend.fetch.modelscope import ModelScope

        return ModelScope(config, token)
    from llama_ascend.fetch.huggingface import HuggingFace

    return HuggingFace(config, token)
