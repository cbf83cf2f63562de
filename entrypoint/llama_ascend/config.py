"""The deployment config: typed, documented models and their loading (profile → env overrides → --set).

These models are the one definition behind validation, the JSON schema (config/schema.json, the Helm chart's
values.schema.json) and the README's config table.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from llama_ascend.combinations import conflicts
from llama_ascend.errors import ConfigError
from llama_ascend.flags import managed_key
from llama_ascend.options import CONFIG_ENV
from llama_ascend.paths import cache_root, expand_path

ENV_PREFIX = "LLAMA_ASCEND__"
MAX_CONTEXT = 131072  # Llama-3.1's max_position_embeddings

DEFAULT_REVISION = {"modelscope": "master", "huggingface": "main"}

Dtype = Literal["auto", "bfloat16", "float16", "half", "float32", "float"]
GraphMode = Literal["PIECEWISE", "FULL_DECODE_ONLY", "FULL", "FULL_AND_PIECEWISE", "NONE"]
Quantization = Literal["ascend", "awq", "gptq", "fp8", "compressed-tensors", "bitsandbytes"]
# What the ascend backend runs: the graph modes and quantization methods of vLLM-Ascend 0.18.0 (its
# vllm_ascend/platform.py and quantization registry). `make check-pins` renders every value the Literals above accept
# for the ascend backend and checks it against that release's source, so a newly accepted value is checked too.
ASCEND_GRAPH_MODES: tuple[GraphMode, ...] = ("PIECEWISE", "FULL_DECODE_ONLY", "FULL", "NONE")
ASCEND_QUANTIZATIONS: tuple[Quantization, ...] = ("ascend", "compressed-tensors")


class _Section(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", use_attribute_docstrings=True)


class ModelConfig(_Section):
    source: Literal["modelscope", "huggingface", "local"] = "modelscope"
    """Where the weights come from: `modelscope` (no auth), `huggingface` (token), or `local` (a directory, only verified)."""
    id: str = "LLM-Research/Meta-Llama-3.1-8B-Instruct"
    """Hub model id `owner/name` (ModelScope `LLM-Research/Meta-Llama-3.1-8B-Instruct`, HuggingFace `meta-llama/Llama-3.1-8B-Instruct`)."""
    revision: str | None = None
    """Hub revision (branch, tag or commit); null means the hub's default branch (`master` on ModelScope, `main` on HuggingFace)."""
    path: str = "/models"
    """Hub sources: the volume root that holds `<source>/<owner>/<name>/<revision>/`. `local`: the model directory itself."""
    served_name: str = "Llama-3.1-8B-Instruct"
    """The model name clients send in requests (`--served-model-name`)."""
    trust_remote_code: bool = False
    """Run Python code shipped with the model. Llama needs none; off is the safe default (the original deployment passed it)."""
    endpoint: str | None = None
    """Hub endpoint override for mirrors and tests (default: the hub's own, or MODELSCOPE_ENDPOINT / HF_ENDPOINT)."""
    token_env: str = "HF_TOKEN"
    """Environment variable that holds the HuggingFace token. The token is never printed or rendered into args."""
    token_file: str | None = None
    """A mounted file with the HuggingFace token (read when the variable in `token_env` is unset)."""
    allow_patterns: list[str] = Field(
        default_factory=lambda: ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt", "*.jinja"]
    )
    """Glob patterns of the files to fetch: what vLLM loads (weights, configs, tokenizer)."""
    ignore_patterns: list[str] = Field(default_factory=lambda: ["original/*", "*.pth", "*.bin", "*.gguf"])
    """Glob patterns never fetched (the `original/` consolidated checkpoint, other formats)."""

    @model_validator(mode="after")
    def _hub_id_has_owner(self) -> ModelConfig:
        if self.source != "local" and not re.fullmatch(r"[\w.-]+/[\w.-]+", self.id):
            raise ValueError(f"model.id must be 'owner/name' for source {self.source}, got {self.id!r}")
        return self

    @property
    def effective_revision(self) -> str:
        return self.revision or DEFAULT_REVISION.get(self.source, "")


class ServerConfig(_Section):
    host: str = "0.0.0.0"
    """Address the OpenAI server binds."""
    port: int = Field(default=8000, ge=1, le=65535)
    """Port of the OpenAI server."""
    dtype: Dtype = "bfloat16"
    """Weight and activation dtype (vLLM `--dtype`)."""
    tensor_parallel_size: Literal[1, 2, 4, 8] = 1
    """Cards per replica (vLLM `--tensor-parallel-size`); the chart requests this many `huawei.com/Ascend910`."""
    max_model_len: int = Field(default=4096, gt=0, le=MAX_CONTEXT)
    """Longest prompt + completion in tokens (Llama-3.1 supports up to 131072)."""
    max_num_seqs: int = Field(default=8, ge=1, le=1024)
    """Sequences batched at once."""
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    """Fraction of each NPU's HBM vLLM may use for weights, activations and KV cache (ascend only)."""
    compilation: GraphMode = "PIECEWISE"
    """ACLGraph capture mode (`cudagraph_mode` of vLLM's compilation config); ascend only, ignored on cpu."""
    cudagraph_capture_sizes: list[Annotated[int, Field(ge=1, le=8192)]] | None = None
    """Batch sizes ACL graphs are captured for (`cudagraph_capture_sizes` of the compilation config); null: vLLM-Ascend's default sizes up to `max_num_seqs`. The largest must reach `max_num_seqs`; ascend only."""
    enforce_eager: bool = False
    """Skip graph capture and torch.compile: faster start, slower decode."""
    async_scheduling: bool | None = None
    """Schedule the next step while the current one runs (vLLM `--async-scheduling`); null: vLLM decides (0.18.0 turns it on where it is compatible), true: on or fail at start, false: off."""
    quantization: Quantization | None = None
    """Quantization method of the weights (`ascend` for vLLM-Ascend W8A8/W8A16 checkpoints); null for bf16."""
    api_key_env: str | None = None
    """Environment variable holding the API key clients must send; null serves without a key. Never rendered into args."""
    shutdown_timeout: int = Field(default=30, ge=0, le=3600)
    """Seconds in-flight requests may take to finish after SIGTERM (vLLM `--shutdown-timeout`)."""
    cache_dir: str | None = None
    """Compile caches (vLLM, inductor, triton, TMPDIR) so restarts are warm; null: `<model.path>/cache` for hub sources, `$LLAMA_ASCEND_CACHE/compile-cache` for local."""
    additional_config: dict[str, Any] = Field(default_factory=dict)
    """vLLM-Ascend's own options (vLLM `--additional-config`, e.g. `weight_prefetch_config`); ascend only. Keys removed since vLLM-Ascend 0.12 are refused."""
    cpu_kvcache_space: int = Field(default=2, ge=1, le=512)
    """GiB of KV cache on the cpu backend (VLLM_CPU_KVCACHE_SPACE); ignored on ascend."""
    extra_args: list[str] = Field(default_factory=list)
    """Further vLLM server flags passed verbatim; a flag that a key above manages is an error."""


RouterPolicy = Literal["cache_aware", "round_robin", "power_of_two", "consistent_hash", "kv_aware", "random"]


class RouterDiscovery(_Section):
    selector: dict[str, str] = Field(default_factory=dict)
    """Kubernetes label selector of the model pods (`app.kubernetes.io/component: server`); empty: no discovery, the router uses `router.workers`."""
    namespace: str | None = None
    """Namespace to watch for model pods; null: the router pod's own."""
    port: int | None = Field(default=None, ge=1, le=65535)
    """Port of the model pods' OpenAI server; null: `server.port`."""


class RouterConfig(_Section):
    policy: RouterPolicy = "cache_aware"
    """How the router picks a replica: `cache_aware` keeps a conversation's prefix on the replica that has it cached (falling back to the least loaded one when the load is unbalanced), `round_robin`, `power_of_two` (least loaded of two), `consistent_hash`, `kv_aware`, `random`."""
    host: str = "0.0.0.0"
    """Address the router binds."""
    port: int = Field(default=8000, ge=1, le=65535)
    """Port of the router's OpenAI endpoint (the one clients call)."""
    metrics_host: str = "0.0.0.0"
    """Address of the router's Prometheus /metrics."""
    metrics_port: int = Field(default=29000, ge=1, le=65535)
    """Port of the router's Prometheus /metrics."""
    workers: list[str] = Field(default_factory=list)
    """A static list of replica base URLs (`http://10.0.0.5:8000`); `llama-ascend router --worker-url` adds to it. Empty with `discovery.selector` set: Kubernetes discovery."""
    discovery: RouterDiscovery = Field(default_factory=RouterDiscovery)
    """Where the router finds its workers in Kubernetes (label selector, namespace, port)."""
    health_check_interval: int = Field(default=10, ge=1, le=3600)
    """Seconds between the router's health checks of each worker (`/health`)."""
    health_failure_threshold: int = Field(default=2, ge=1, le=100)
    """Failed health checks in a row before a worker is taken out."""
    health_success_threshold: int = Field(default=2, ge=1, le=100)
    """Passed health checks in a row before a worker is put back."""
    health_check_timeout: int = Field(default=5, ge=1, le=300)
    """Seconds a health check may take."""
    retries: int = Field(default=3, ge=0, le=20)
    """Times a request that failed on a worker (connection refused, 5xx) is tried on another; 0 disables retries."""
    retry_initial_backoff_ms: int = Field(default=50, ge=1, le=60000)
    """First pause before a retry; it grows by 1.5x per retry."""
    retry_max_backoff_ms: int = Field(default=2000, ge=1, le=600000)
    """Longest pause between retries."""
    circuit_breaker: bool = True
    """Stop sending to a worker that keeps failing until it recovers (the thresholds below)."""
    cb_failure_threshold: int = Field(default=5, ge=1, le=1000)
    """Failures within the window that open a worker's circuit."""
    cb_success_threshold: int = Field(default=2, ge=1, le=1000)
    """Successes in the half-open state that close it again."""
    cb_timeout: int = Field(default=30, ge=1, le=3600)
    """Seconds an open circuit waits before it lets a trial request through."""
    cb_window: int = Field(default=60, ge=1, le=3600)
    """Seconds of the failure-counting window."""
    request_timeout: int = Field(default=1800, ge=1, le=86400)
    """Seconds a request may take end to end through the router."""
    worker_startup_timeout: int = Field(default=900, ge=1, le=86400)
    """Seconds the router waits at start for its workers to be healthy (an 8B replica loads and captures graphs for minutes)."""
    api_key_env: str | None = None
    """Environment variable holding a key the router itself sends to the workers (its own requests; clients' keys pass through to the workers, which check them). Never rendered into args."""


class Config(_Section):
    backend: Literal["ascend", "cpu"] = "ascend"
    """`ascend` runs vLLM-Ascend on the NPU; `cpu` runs the same path on vLLM's CPU backend (development, CI)."""
    model: ModelConfig = Field(default_factory=ModelConfig)
    """The weights: source, id, revision, volume path and served name."""
    server: ServerConfig = Field(default_factory=ServerConfig)
    """The vLLM OpenAI server."""
    env: dict[str, str] = Field(default_factory=dict)
    """Extra environment variables for the server process (numbers are written as they read, booleans as 1/0)."""
    router: RouterConfig = Field(default_factory=RouterConfig)
    """vLLM's router in front of several replicas (`llama-ascend router`, the chart's `router.enabled`)."""

    @field_validator("env", mode="before")
    @classmethod
    def _env_values_are_strings(cls, env: object) -> object:
        """A variable's value is a string to the server: `--set env.X=1` (YAML reads 1) means "1"."""
        if not isinstance(env, dict):
            return env
        return {
            k: ("1" if v else "0") if isinstance(v, bool) else str(v) if isinstance(v, int | float) else v
            for k, v in env.items()
        }

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        for name in env:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"{name!r} is not a valid environment variable name")
        return env

    @property
    def model_dir(self) -> Path:
        """The directory vLLM loads: the model dir for `local`, else `<path>/<source>/<owner>/<name>/<revision>`."""
        root = expand_path(self.model.path)
        if self.model.source == "local":
            return root
        return root / self.model.source / self.model.id / self.model.effective_revision

    @property
    def cache_dir(self) -> Path:
        if self.server.cache_dir:
            return expand_path(self.server.cache_dir)
        if self.model.source == "local":
            return cache_root() / "compile-cache"
        return expand_path(self.model.path) / "cache"


def config_schema() -> dict[str, Any]:
    """The JSON schema of the config file (also config/schema.json and the chart's `config` values)."""
    schema = Config.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "llama-ascend config"
    # The ascend backend's narrower choices (a missing `backend` is the default, ascend, and matches the `if`).
    schema["allOf"] = [
        {
            "if": {"properties": {"backend": {"const": "ascend"}}},
            "then": {
                "properties": {
                    "server": {
                        "properties": {
                            "compilation": {"enum": list(ASCEND_GRAPH_MODES)},
                            "quantization": {"enum": [*ASCEND_QUANTIZATIONS, None]},
                        }
                    }
                }
            },
        },
        {
            "if": {"properties": {"backend": {"const": "cpu"}}, "required": ["backend"]},
            "then": {"properties": {"server": {"properties": {"quantization": {"not": {"const": "ascend"}}}}}},
        },
    ]
    return schema


def parse_set(item: str) -> tuple[str, Any]:
    """`server.max_num_seqs=16` → ("server.max_num_seqs", 16); the value is a YAML scalar, list or mapping."""
    key, sep, raw = item.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", key):
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE with a dotted key, e.g. --set server.max_num_seqs=16")
    return key, _parse_value(raw, f"--set {item!r}")


def _parse_value(raw: str, where: str) -> Any:
    try:
        return yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: the value is not valid YAML ({getattr(exc, 'problem', None) or exc})") from None


def _env_overrides(environ: Mapping[str, str], problems: list[str]) -> list[tuple[str, Any, str]]:
    """LLAMA_ASCEND__SERVER__PORT=8001 → ("server.port", 8001, "$LLAMA_ASCEND__SERVER__PORT"); bad ones to `problems`."""
    overrides = []
    for name, raw in sorted(environ.items()):
        if name.startswith(ENV_PREFIX) and len(name) > len(ENV_PREFIX):
            parts = name[len(ENV_PREFIX) :].split("__")
            if not all(re.fullmatch(r"[A-Za-z_]\w*", part) for part in parts):
                problems.append(f"${name}: expected LLAMA_ASCEND__<SECTION>__<KEY>, e.g. LLAMA_ASCEND__SERVER__PORT")
                continue
            try:
                value = _parse_value(raw, f"${name}={raw!r}")
            except ConfigError as exc:
                problems.append(str(exc))
                continue
            overrides.append((".".join(part.lower() for part in parts), value, f"${name}"))
    return overrides


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found (pass --config with a file from config/)") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a YAML config file") from None
    except (PermissionError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.__class__.__name__}: {exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: YAML syntax error: {exc.problem or exc.context}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys (backend, model, server, env, router)")
    return data


def _assign(tree: dict[str, Any], key: str, value: Any, origin: str) -> None:
    node = tree
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{origin}: {key}: {part!r} is not a section, cannot set a key inside it")
        node = child
    node[parts[-1]] = value


def _known_keys(loc: Sequence[Any]) -> list[str]:
    model: type[BaseModel] = Config
    for part in loc:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _origin(dotted: str, origins: Mapping[str, str], default_origin: str) -> str:
    """Where a key's value came from: the key's own override, else its closest overridden section, else the file."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in origins:
            return origins[".".join(parts[:i])]
    return default_origin


def _describe(error: Mapping[str, Any], origins: Mapping[str, str], default_origin: str) -> str:
    loc = [str(part) for part in error["loc"]]
    dotted = ".".join(loc)
    origin = _origin(dotted, origins, default_origin)
    if error["type"] == "extra_forbidden":
        known = _known_keys(loc[:-1])
        close = difflib.get_close_matches(loc[-1], known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
        return f"{origin}: {dotted}: unknown key ({hint})"
    message = error["msg"].removeprefix("Value error, ")
    got = error.get("input")
    suffix = "" if error["type"] in ("missing", "value_error") else f" (got {got!r})"
    return f"{origin}: {dotted or 'config'}: {message}{suffix}"


def load_config(
    path: str | os.PathLike[str] | None,
    sets: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Load a profile, apply LLAMA_ASCEND__* environment overrides, then --set overrides, and validate.

    The command line wins over the environment, which wins over the file, which wins over the defaults. Every
    problem is reported at once, one line each, in one ConfigError: malformed overrides, wrong types and values,
    unknown keys, `extra_args` that duplicate managed keys, and values the backend does not run.
    """
    environ = os.environ if environ is None else environ
    path = path or environ.get(CONFIG_ENV)
    if not path:
        raise ConfigError(f"no config given: pass --config FILE (e.g. config/dev-cpu.yaml) or set {CONFIG_ENV}")
    file_origin = str(path)
    tree = _read_yaml(Path(path))
    problems: list[str] = []
    origins: dict[str, str] = {}
    layers = _env_overrides(environ, problems)
    for item in sets:
        try:
            layers.append((*parse_set(item), "--set"))
        except ConfigError as exc:
            problems.append(str(exc))
    for key, value, origin in layers:
        try:
            _assign(tree, key, value, origin)
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        origins[key] = origin
    config = None
    try:
        config = Config.model_validate(tree)
    except ValidationError as exc:
        problems += [_describe(e, origins, file_origin) for e in exc.errors()]
    problems += _extra_args_problems(tree, origins, file_origin)
    problems += _backend_problems(tree, origins, file_origin)
    if config is not None and not problems:  # combinations of values are judged once each value is valid
        problems += [
            f"{_origin(c.key, origins, file_origin)}: {c.key}: {c.message}" for c in conflicts(config, config.env)
        ]
    if problems or config is None:
        raise ConfigError("\n".join(problems))
    return config


# Values a field's type accepts that a backend does not run: (backend, key) -> (allowed values, why, fix).
_BACKEND_RULES: dict[tuple[str, str], tuple[tuple[str | None, ...], str, str]] = {
    ("ascend", "compilation"): (
        ASCEND_GRAPH_MODES,
        "vLLM-Ascend 0.18.0 runs {allowed}{rewrite}",
        "set server.compilation to one of them",
    ),
    ("ascend", "quantization"): (
        (*ASCEND_QUANTIZATIONS, None),
        "vLLM-Ascend 0.18.0 supports only {allowed}",
        "use a checkpoint quantized for Ascend (msModelSlim W8A8/W8A16: `ascend`) or compressed-tensors, or null "
        "for the bf16 weights",
    ),
    ("cpu", "quantization"): (
        (*(v for v in get_args(Quantization) if v != "ascend"), None),
        "`ascend` is vLLM-Ascend's method; vLLM's CPU backend has none by that name",
        "set server.quantization to null (bf16 weights), or use backend: ascend",
    ),
}
# What vLLM-Ascend 0.18.0's platform does instead of a mode it does not run (vllm_ascend/platform.py).
ASCEND_GRAPH_MODE_REWRITES = {"FULL_AND_PIECEWISE": "PIECEWISE"}


def _backend_problems(tree: Mapping[str, Any], origins: Mapping[str, str], file_origin: str) -> list[str]:
    """One line per value that its field accepts but the configured backend does not run (exit 2, not a server that
    silently runs something else or fails at start on the NPU)."""
    backend = tree.get("backend", "ascend")
    server = tree.get("server")
    if not isinstance(server, dict) or not isinstance(backend, str):
        return []
    problems = []
    for (rule_backend, key), (allowed, why, fix) in _BACKEND_RULES.items():
        if rule_backend != backend or key not in server:
            continue
        value = server[key]
        field = ServerConfig.model_fields[key]
        if value in allowed or value not in literal_values(field.annotation):
            continue  # allowed, or a wrong value the field's own validation reports
        rewrite = ASCEND_GRAPH_MODE_REWRITES.get(value) if key == "compilation" else None
        reason = why.format(
            allowed=", ".join(repr(v) for v in allowed if v is not None),
            rewrite=f"; it silently runs {value} as {rewrite}" if rewrite else "",
        )
        origin = _origin(f"server.{key}", origins, file_origin)
        problems.append(f"{origin}: server.{key}: {value!r} is refused on the {backend} backend: {reason}; {fix}")
    return problems


def literal_values(annotation: Any) -> tuple[Any, ...]:
    """The values of a Literal, also inside `Literal[...] | None`."""
    if get_origin(annotation) is Literal:
        return get_args(annotation)
    return tuple(value for arg in get_args(annotation) for value in literal_values(arg))


def _extra_args_problems(tree: Mapping[str, Any], origins: Mapping[str, str], file_origin: str) -> list[str]:
    """One line per `server.extra_args` entry that duplicates a managed key (checked on the raw values, so these
    are reported together with every other problem)."""
    server = tree.get("server")
    args = server.get("extra_args") if isinstance(server, dict) else None
    if not isinstance(args, list):
        return []
    origin = _origin("server.extra_args", origins, file_origin)
    return [
        f"{origin}: server.extra_args: {arg!r} duplicates the managed key {managed}; set that key instead"
        for arg in args
        if isinstance(arg, str) and (managed := managed_key(arg))
    ]
