"""What vLLM 0.18.0 and vLLM-Ascend 0.18.0 accept, read statically (with `ast`) from their source releases: the OpenAI
server's flags (vllm/engine/arg_utils.py, vllm/entrypoints/openai/cli_args.py) and which of them are booleans, the
CompilationConfig fields, the CUDAGraphMode values, the dtypes and the VLLM_* variables vllm/envs.py reads; the
graph modes vLLM-Ascend's platform runs as they are or rewrites, its supported and registered quantizations, the
additional_config keys and the variables vllm_ascend/envs.py reads. The pin checker (ascend_pins) checks the
rendered commands against them.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from llama_ascend_dev.downloads import Sdist


@dataclass
class VllmArgs:
    flags: set[str]
    bool_flags: set[str]
    compilation_fields: set[str]
    graph_modes: set[str]
    dtypes: set[str]
    env_vars: set[str]


def _classes(sources: Iterable[str]) -> dict[str, ast.ClassDef]:
    found: dict[str, ast.ClassDef] = {}
    for text in sources:
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef):
                found.setdefault(node.name, node)
    return found


def _fields(cls: ast.ClassDef, classes: dict[str, ast.ClassDef]) -> dict[str, str]:
    """Annotated class attributes (dataclass fields) with their annotation text, base classes first."""
    fields: dict[str, str] = {}
    for base in cls.bases:
        if isinstance(base, ast.Name) and base.id in classes:
            fields.update(_fields(classes[base.id], classes))
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            fields[node.target.id] = ast.unparse(node.annotation)
    return fields


def _is_bool(annotation: str) -> bool:
    return re.search(r"\bbool\b", annotation) is not None


def parse_vllm(sdist: Sdist) -> VllmArgs:
    config_sources = [sdist.read(n) for n in sdist.names("vllm/config/") if n.endswith(".py")]
    arg_utils = sdist.read("vllm/engine/arg_utils.py")
    cli_args = sdist.read("vllm/entrypoints/openai/cli_args.py")
    classes = _classes([*config_sources, arg_utils, cli_args])
    flags: set[str] = set()
    bool_flags: set[str] = set()

    # arg_utils.py / cli_args.py: add_argument("--x", "-y", **group_kwargs["field"]) where group_kwargs = get_kwargs(C)
    for text in (arg_utils, cli_args):
        tree = ast.parse(text)
        kwarg_sources: dict[str, str] = {}
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Call)
                and ast.unparse(node.value.func).endswith("get_kwargs")
                and node.value.args
                and isinstance(node.value.args[0], ast.Name)
            ):
                kwarg_sources[node.targets[0].id] = node.value.args[0].id
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr != "add_argument":
                continue
            names = {a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)}
            names = {n for n in names if n.startswith("-")}
            if not names:
                continue
            flags |= names
            is_bool = any(k.arg == "action" and "BooleanOptionalAction" in ast.unparse(k.value) for k in node.keywords)
            # **group_kwargs["field"], also inside a dict merge: **{**group_kwargs["field"], "default": None}
            spreads = [k.value for k in node.keywords if k.arg is None]
            spreads += [
                v
                for d in spreads
                if isinstance(d, ast.Dict)
                for key, v in zip(d.keys, d.values, strict=True)
                if key is None
            ]
            for spread in spreads:
                if isinstance(spread, ast.Subscript) and isinstance(spread.value, ast.Name):
                    cls_name = kwarg_sources.get(spread.value.id)
                    key = spread.slice
                    if cls_name in classes and isinstance(key, ast.Constant):
                        annotation = _fields(classes[cls_name], classes).get(str(key.value), "")
                        is_bool = is_bool or _is_bool(annotation)
            if is_bool:
                bool_flags |= {n for n in names if n.startswith("--")}

    # cli_args.py: FrontendArgs (and its bases) register `--field-name` for every field.
    for name, annotation in _fields(classes["FrontendArgs"], classes).items():
        flag = "--" + name.replace("_", "-")
        flags.add(flag)
        if _is_bool(annotation):
            bool_flags.add(flag)
    flags |= {"--no-" + f[2:] for f in bool_flags}

    compilation_fields = set(_fields(classes["CompilationConfig"], classes))
    graph_modes = {
        t.id
        for node in classes["CUDAGraphMode"].body
        if isinstance(node, ast.Assign)
        for t in node.targets
        if isinstance(t, ast.Name)
    }
    dtypes: set[str] = set()
    for text in config_sources:
        for node in ast.walk(ast.parse(text)):
            targets = [t.id for t in getattr(node, "targets", []) if isinstance(t, ast.Name)]
            if isinstance(node, ast.Assign) and "ModelDType" in targets:
                strings = [c.value for c in ast.walk(node.value) if isinstance(c, ast.Constant)]
                dtypes |= {v for v in strings if isinstance(v, str)}
    return VllmArgs(flags, bool_flags, compilation_fields, graph_modes, dtypes, _env_keys(sdist.read("vllm/envs.py")))


def _env_keys(text: str) -> set[str]:
    """Keys of the `environment_variables` / `env_variables` dict literal of an envs.py."""
    keys: set[str] = set()
    for node in ast.walk(ast.parse(text)):
        target: ast.expr
        value: ast.expr | None
        if isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        elif isinstance(node, ast.Assign):
            target, value = node.targets[0], node.value
        else:
            continue
        named = isinstance(target, ast.Name) and target.id in ("environment_variables", "env_variables")
        if named and isinstance(value, ast.Dict):
            keys |= {k.value for k in value.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
    return keys


@dataclass
class AscendArgs:
    graph_modes: set[str]  # the cudagraph modes platform.py runs as they are
    quantizations: set[str]  # NPUPlatform.supported_quantization: vLLM refuses any other method at start
    additional_config_keys: set[str]
    env_vars: set[str]
    # modes platform.py replaces by another one before it runs them: {FULL_AND_PIECEWISE: PIECEWISE}
    graph_mode_rewrites: dict[str, str] = field(default_factory=dict)
    # methods vllm_ascend registers with vLLM (@register_quantization_config): the ones it can load
    registered_quantizations: set[str] = field(default_factory=set)


def _mode_compares(test: ast.expr) -> list[str]:
    """X of `<...>.cudagraph_mode == CUDAGraphMode.X`, also several joined by `or`."""
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.Or):
        return [mode for value in test.values for mode in _mode_compares(value)]
    if (
        isinstance(test, ast.Compare)
        and ast.unparse(test.left).endswith("cudagraph_mode")
        and len(test.ops) == 1
        and isinstance(test.ops[0], ast.Eq)
        and isinstance(test.comparators[0], ast.Attribute)
        and ast.unparse(test.comparators[0].value) == "CUDAGraphMode"
    ):
        return [test.comparators[0].attr]
    return []


def _mode_assignments(body: list[ast.stmt]) -> list[str]:
    """Y of every `<...>.cudagraph_mode = CUDAGraphMode.Y` in a branch body, in order."""
    modes = []
    for statement in body:
        for node in ast.walk(statement):
            if (
                isinstance(node, ast.Assign)
                and any(ast.unparse(t).endswith(".cudagraph_mode") for t in node.targets)
                and isinstance(node.value, ast.Attribute)
                and ast.unparse(node.value.value) == "CUDAGraphMode"
            ):
                modes.append(node.value.attr)
    return modes


def graph_mode_handling(platform_source: str) -> tuple[set[str], dict[str, str]]:
    """(the modes platform.py runs as they are, {mode: the mode it replaces it with}).

    A branch `if cudagraph_mode == X:` whose body assigns another mode to cudagraph_mode rewrites X (vLLM-Ascend
    0.18.0: FULL_AND_PIECEWISE -> PIECEWISE); one that does not handles X. A mode no branch names falls through to
    the final `else`, which sets NONE.
    """
    handled: set[str] = set()
    rewrites: dict[str, str] = {}
    for node in ast.walk(ast.parse(platform_source)):
        if not isinstance(node, ast.If):
            continue
        assigned = _mode_assignments(node.body)
        for mode in _mode_compares(node.test):
            if assigned and assigned[-1] != mode:
                rewrites[mode] = assigned[-1]
            else:
                handled.add(mode)
    return handled - set(rewrites), rewrites


def _string_constants(tree: ast.AST) -> dict[str, str]:
    return {
        t.id: n.value.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)
        for t in n.targets
        if isinstance(t, ast.Name)
    }


def _string_value(node: ast.expr, constants: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return constants.get(node.id) if isinstance(node, ast.Name) else None


def registered_quantizations(sdist: Sdist, constants: dict[str, str]) -> set[str]:
    """The methods of every `@register_quantization_config(NAME)` under vllm_ascend/."""
    methods: set[str] = set()
    for name in sdist.names("vllm_ascend/"):
        if not name.endswith(".py"):
            continue
        for node in ast.walk(ast.parse(sdist.read(name))):
            if isinstance(node, ast.ClassDef | ast.FunctionDef):
                for decorator in node.decorator_list:
                    if (
                        isinstance(decorator, ast.Call)
                        and ast.unparse(decorator.func).endswith("register_quantization_config")
                        and decorator.args
                    ):
                        value = _string_value(decorator.args[0], constants)
                        if value:
                            methods.add(value)
    return methods


def parse_vllm_ascend(sdist: Sdist) -> AscendArgs:
    platform = sdist.read("vllm_ascend/platform.py")
    constants = _string_constants(ast.parse(sdist.read("vllm_ascend/utils.py")))
    quantizations: set[str] = set()
    for node in ast.walk(ast.parse(platform)):
        if isinstance(node, ast.AnnAssign) and ast.unparse(node.target) == "supported_quantization":
            for elt in getattr(node.value, "elts", []):
                value = _string_value(elt, constants)
                if value:
                    quantizations.add(value)
    graph_modes, rewrites = graph_mode_handling(platform)
    keys = set(re.findall(r"additional_config\.get\(\s*\"(\w+)\"", sdist.read("vllm_ascend/ascend_config.py")))
    return AscendArgs(
        graph_modes,
        quantizations,
        keys,
        _env_keys(sdist.read("vllm_ascend/envs.py")),
        rewrites,
        registered_quantizations(sdist, constants),
    )


def graph_mode_problem(mode: str, ascend: AscendArgs) -> str | None:
    """Why vLLM-Ascend 0.18.0 does not run cudagraph_mode `mode` as asked, or None when it does."""
    if mode in ascend.graph_mode_rewrites:
        return f"vLLM-Ascend's platform silently runs cudagraph_mode {mode} as {ascend.graph_mode_rewrites[mode]}"
    if mode not in ascend.graph_modes:
        return f"vLLM-Ascend's platform does not handle cudagraph_mode {mode} (it falls back to NONE)"
    return None


def quantization_problem(method: str, ascend: AscendArgs) -> str | None:
    """Why vLLM-Ascend 0.18.0 does not run quantization `method`, or None when it does."""
    if method not in ascend.quantizations:
        return f"vLLM-Ascend supports {sorted(ascend.quantizations)} (NPUPlatform.supported_quantization)"
    if ascend.registered_quantizations and method not in ascend.registered_quantizations:
        return f"vLLM-Ascend registers no `{method}` quantization config ({sorted(ascend.registered_quantizations)})"
    return None
