"""What the two hubs share: the token, the clients' environment while they run, the base of a source (listing and
download into the `.partial` dir) with the wording of its errors, and disk-full detection."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

from llama_ascend.config import Config
from llama_ascend.errors import ConfigError, LlamaAscendError
from llama_ascend.fetch.layout import Manifest, RemoteFile
from llama_ascend.fetch.progress import Progress
from llama_ascend.fetch.results import FetchFailed, config_error, gb
from llama_ascend.fetch.settings import (
    ENV_RETRIES,
    ENV_RETRY_MAX_DELAY,
    ENV_TIMEOUT,
    ENV_WORKERS,
    HASH_ATTEMPTS,
    env_number,
)
from llama_ascend.paths import expand_path

log = logging.getLogger("llama_ascend.fetch")


def resolve_token(config: Config, environ: Mapping[str, str] | None = None) -> str | None:
    """The hub token from $<model.token_env> or the file model.token_file. Never logged.

    For ModelScope the default `HF_TOKEN` variable is not read (an HF token must not be sent to another hub); the
    modelscope client reads its own MODELSCOPE_API_TOKEN.
    """
    environ = os.environ if environ is None else environ
    m = config.model
    if m.source == "huggingface" or m.token_env != "HF_TOKEN":
        value = environ.get(m.token_env, "").strip()
        if value:
            return value
    if m.token_file:
        path = expand_path(m.token_file)
        try:
            value = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise ConfigError(
                f"model.token_file: {path} does not exist (mount the token there, or set ${m.token_env})"
            ) from None
        except OSError as exc:
            raise ConfigError(f"model.token_file: cannot read {path} ({exc.strerror or exc})") from None
        if not value:
            raise ConfigError(f"model.token_file: {path} is empty")
        return value
    return None


@contextlib.contextmanager
def client_environment(config: Config) -> Iterator[None]:
    """Defaults for the hub clients while they run, restored afterwards so nothing leaks into the server's env.

    The clients read most of these when first imported, so set them before that import (fetch() does)."""
    root = expand_path(config.model.path)
    retries = int(env_number(ENV_RETRIES, 5))
    defaults = {
        "MODELSCOPE_CACHE": str(root / ".cache" / "modelscope"),
        "MODELSCOPE_HOME": str(root / ".cache" / "modelscope"),
        "MODELSCOPE_LOG_LEVEL": "WARNING",
        "MODELSCOPE_DOWNLOAD_INTRA_CLOUD": "false",  # no Alibaba-cloud region probing from a pod
        "INTRA_CLOUD_ACCELERATION": "false",  # the same for clients before 1.38
        # The modelscope client refuses 0 (it warns and falls back to its default of 5): it retries at least once.
        "MODELSCOPE_DOWNLOAD_MAX_RETRIES": str(max(1, retries)),
        "MODELSCOPE_API_MAX_RETRIES": str(max(1, retries)),
        "MODELSCOPE_DOWNLOAD_RETRY_MAX_DELAY_SECONDS": str(int(env_number(ENV_RETRY_MAX_DELAY, 30))),
        "MODELSCOPE_DOWNLOAD_TIMEOUT": str(int(env_number(ENV_TIMEOUT, 60))),
        "HF_HOME": str(root / ".cache" / "huggingface"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "TQDM_DISABLE": "1",  # the clients' own bars; ours is rich
    }
    saved = {k: os.environ.get(k) for k in defaults}
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    quiet = {name: logging.getLogger(name) for name in ("httpx", "httpx2", "huggingface_hub", "filelock")}
    levels = {name: logger.level for name, logger in quiet.items()}
    if not log.isEnabledFor(logging.DEBUG):  # one line per HTTP request is noise in a pod log
        for logger in quiet.values():
            logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for name, level in levels.items():
            quiet[name].setLevel(level)
        for key, previous in saved.items():
            if previous is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = previous


class Source:
    name = ""
    default_endpoint = ""
    endpoint_env = ""

    def __init__(self, config: Config, token: str | None) -> None:
        self.config = config
        self.token = token
        self.repo_id = config.model.id
        self.revision = config.model.effective_revision
        self.endpoint = (config.model.endpoint or os.environ.get(self.endpoint_env) or self.default_endpoint).rstrip(
            "/"
        )
        self.retries = int(env_number(ENV_RETRIES, 5))
        self.workers = max(1, int(env_number(ENV_WORKERS, 4)))

    @property
    def what(self) -> str:
        return f"{self.name} model {self.repo_id} revision {self.revision}"

    def manifest(self) -> Manifest:
        raise NotImplementedError

    def download(self, files: list[RemoteFile], staging: Path, progress: Progress, partial: dict[str, int]) -> None:
        raise NotImplementedError

    # shared wording of the errors
    def not_found(self, detail: str = "") -> LlamaAscendError:
        return config_error(
            f"{self.what} not found at {self.endpoint} (404: model or revision not found{': ' + detail if detail else ''}); "
            "check model.id and model.revision",
            "not_found",
        )

    def denied(self, status: int | None, file: str | None = None) -> LlamaAscendError:
        where = f" ({file})" if file else ""
        if self.token is None:
            hint = (
                f"this model needs a token: export ${self.config.model.token_env} or mount it and set model.token_file"
                if self.name == "huggingface"
                else "this model needs a token: set model.token_file (or MODELSCOPE_API_TOKEN)"
            )
        elif status == 403:
            hint = (
                f"the token has no access: accept the model's license on its hub page ({self.endpoint}/{self.repo_id}) "
                "with the account that owns the token"
            )
        else:
            hint = "the token was rejected: check that it is valid and not expired"
        return config_error(
            f"{self.what}{where}: access denied by {self.endpoint} (HTTP {status or '401/403'}); {hint}", "auth"
        )

    def network(self, file: str | None, cause: str, timeout: bool) -> FetchFailed:
        where = f" {file}" if file else " (listing)"
        if timeout:
            return FetchFailed(
                f"{self.what}:{where}: timed out after {self.retries} retries ({cause}); the hub or the link is too "
                f"slow or down: retry, or raise ${ENV_RETRIES} / ${ENV_TIMEOUT}",
                "timeout",
            )
        return FetchFailed(
            f"{self.what}:{where}: failed after {self.retries} retries ({cause}); check the network and the endpoint "
            f"{self.endpoint} (model.endpoint)",
            "network",
        )

    def integrity(self, file: str, detail: str) -> FetchFailed:
        return FetchFailed(
            f"{self.what}: {file}: {detail} after {HASH_ATTEMPTS} downloads; the hub (or a proxy) serves corrupted "
            "data: retry later or use another model.endpoint",
            "integrity",
        )


def disk_full(what: str, directory: Path, file: str | None) -> FetchFailed:
    free = shutil.disk_usage(directory).free if directory.exists() else 0
    return FetchFailed(
        f"{what}: disk full under {directory} while writing {file or 'the weights'} ({gb(free)} free); "
        "the partial files were removed: free space or enlarge the volume (model.path)",
        "disk",
    )


def exception_chain(exc: BaseException | None) -> list[BaseException]:
    """The exception and its causes, outermost first."""
    chain: list[BaseException] = []
    while exc is not None and exc not in chain and len(chain) < 8:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    return chain


def is_disk_full(exc: BaseException | None) -> bool:
    return any(isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT) for e in exception_chain(exc))
