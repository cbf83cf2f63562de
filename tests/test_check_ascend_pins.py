"""scripts/check_ascend_pins.py without the network: its static reading of vLLM / vLLM-Ascend source releases and its
argv, requirement and conflict checks, on small source releases laid out like the real ones (same files, the same
code patterns the parser relies on). `make check-pins` runs it against the real releases on PyPI."""

from __future__ import annotations

import io
import json
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import check_ascend_pins as pins  # noqa: E402
from image_build import dockerfile_args  # noqa: E402

VLLM_FILES = {
    "setup.py": """
        from setuptools import setup
        setup(name="vllm", extras_require={"bench": ["pandas"], "audio": ["librosa", "soundfile"]})
    """,
    "requirements/common.txt": """
        regex # Replace re
        numpy
        opencv-python-headless >= 4.13.0    # required for video IO
        llguidance >= 1.3.0, < 1.4.0; platform_machine == "x86_64" or platform_machine == "aarch64"
        six>=1.16.0; python_version > '3.11'
        -r extra.txt
    """,
    "requirements/extra.txt": "pyzmq >= 25.0.0\n",
    "vllm/config/model.py": """
        from typing import Literal
        ModelDType = Literal["auto", "half", "bfloat16", "float"]
        class ModelConfig:
            model: str = "x"
            enforce_eager: bool = False
            dtype: ModelDType | str = "auto"
            max_model_len: int = None
            trust_remote_code: bool = False
            skip_tokenizer_init: bool | None = None
    """,
    "vllm/config/compilation.py": """
        import enum
        class CUDAGraphMode(enum.Enum):
            NONE = 0
            PIECEWISE = 1
            FULL = 2
            FULL_DECODE_ONLY = (FULL, NONE)
        class CompilationConfig:
            mode: int = 0
            cudagraph_mode: CUDAGraphMode = None
    """,
    "vllm/config/vllm.py": """
        class VllmConfig:
            compilation_config: CompilationConfig = None
            additional_config: dict = None
    """,
    "vllm/engine/arg_utils.py": """
        import argparse
        class EngineArgs:
            @staticmethod
            def add_cli_args(parser):
                model_kwargs = get_kwargs(ModelConfig)
                model_group = parser.add_argument_group(title="ModelConfig")
                model_group.add_argument("--model", **model_kwargs["model"])
                model_group.add_argument("--dtype", **model_kwargs["dtype"])
                model_group.add_argument("--enforce-eager", **model_kwargs["enforce_eager"])
                model_group.add_argument("--max-model-len", **model_kwargs["max_model_len"])
                model_group.add_argument("--trust-remote-code", **model_kwargs["trust_remote_code"])
                model_group.add_argument("--skip-tokenizer-init", **{**model_kwargs["skip_tokenizer_init"], "default": None})
                model_group.add_argument("--quantization", "-q", type=str)
                vllm_kwargs = get_kwargs(VllmConfig)
                vllm_group = parser.add_argument_group(title="VllmConfig")
                vllm_group.add_argument("--compilation-config", "-cc", **vllm_kwargs["compilation_config"])
                vllm_group.add_argument("--additional-config", **vllm_kwargs["additional_config"])
                parser.add_argument("--shutdown-timeout", type=int, default=0)
                parser.add_argument("--fail-on-environ-validation", action=argparse.BooleanOptionalAction)
                return parser
    """,
    "vllm/entrypoints/openai/cli_args.py": """
        class BaseFrontendArgs:
            chat_template: str | None = None
        class FrontendArgs(BaseFrontendArgs):
            host: str | None = None
            port: int = 8000
            disable_uvicorn_access_log: bool = False
        def make_arg_parser(parser):
            parser.add_argument("--headless", action="store_true")
            return parser
    """,
    "vllm/entrypoints/openai/api_server.py": """
        if __name__ == "__main__":
            pass
    """,
    "vllm/envs.py": """
        environment_variables: dict[str, object] = {
            "VLLM_CACHE_ROOT": lambda: None,
            "VLLM_API_KEY": lambda: None,
            "VLLM_NO_USAGE_STATS": lambda: None,
        }
    """,
}

ASCEND_FILES = {
    "PKG-INFO": "Metadata-Version: 2.1\nName: vllm_ascend\nVersion: 0.18.0\nRequires-Dist: torch==2.9.0\n",
    "vllm_ascend/utils.py": 'ASCEND_QUANTIZATION_METHOD = "ascend"\nCOMPRESSED_TENSORS_METHOD = "compressed-tensors"\n',
    "vllm_ascend/platform.py": """
        class NPUPlatform:
            supported_quantization: list[str] = [ASCEND_QUANTIZATION_METHOD, COMPRESSED_TENSORS_METHOD]
            @classmethod
            def check_and_update_config(cls, compilation_config):
                if compilation_config.cudagraph_mode == CUDAGraphMode.NONE:
                    pass
                elif compilation_config.cudagraph_mode == CUDAGraphMode.PIECEWISE:
                    pass
    """,
    "vllm_ascend/ascend_config.py": """
        class AscendConfig:
            def __init__(self, vllm_config):
                additional_config = vllm_config.additional_config or {}
                self.enable_kv_nz = additional_config.get("enable_kv_nz", False)
    """,
    "vllm_ascend/envs.py": 'env_variables = {"VLLM_ASCEND_ENABLE_NZ": lambda: 1}\n',
}


def _sdist(path: Path, prefix: str, files: dict[str, str]) -> pins.Sdist:
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = textwrap.dedent(text).lstrip("\n").encode()
            info = tarfile.TarInfo(f"{prefix}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return pins.Sdist(path)


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> tuple[pins.Sdist, pins.Sdist]:
    tmp = tmp_path_factory.mktemp("sdists")
    return (
        _sdist(tmp / "vllm-0.18.0.tar.gz", "vllm-0.18.0", VLLM_FILES),
        _sdist(tmp / "vllm_ascend-0.18.0.tar.gz", "vllm_ascend-0.18.0", ASCEND_FILES),
    )


def _launch(*args: str, env: dict[str, str] | None = None) -> dict:
    return {"argv": ["python3", "-m", pins.SERVER_MODULE, *args], "env": env or {}, "secret_env": {}}


GOOD = (
    "--model",
    "/models/x",
    "--dtype",
    "bfloat16",
    "--host",
    "0.0.0.0",
    "--port",
    "8000",
    "--max-model-len",
    "4096",
    "--shutdown-timeout",
    "30",
    "--compilation-config",
    json.dumps({"cudagraph_mode": "PIECEWISE"}),
)


def test_parser_reads_flags_booleans_and_config_fields(releases: tuple[pins.Sdist, pins.Sdist]) -> None:
    vllm = pins.parse_vllm(releases[0])
    engine = {"--model", "--dtype", "--quantization", "-q", "--compilation-config", "-cc", "--shutdown-timeout"}
    assert engine <= vllm.flags
    assert {"--host", "--port", "--chat-template", "--headless"} <= vllm.flags  # frontend dataclass + explicit
    # bool dataclass fields and BooleanOptionalAction get --no-X; others don't.
    assert {"--enforce-eager", "--no-enforce-eager", "--no-disable-uvicorn-access-log"} <= vllm.flags
    assert "--no-fail-on-environ-validation" in vllm.flags
    assert "--no-skip-tokenizer-init" in vllm.flags  # bool field spread inside a dict merge
    assert "--no-model" not in vllm.flags and "--no-headless" not in vllm.flags
    assert vllm.compilation_fields == {"mode", "cudagraph_mode"}
    assert vllm.graph_modes == {"NONE", "PIECEWISE", "FULL", "FULL_DECODE_ONLY"}
    assert vllm.dtypes == {"auto", "half", "bfloat16", "float"}
    assert vllm.env_vars == {"VLLM_CACHE_ROOT", "VLLM_API_KEY", "VLLM_NO_USAGE_STATS"}


def test_ascend_parser_reads_platform_and_config(releases: tuple[pins.Sdist, pins.Sdist]) -> None:
    ascend = pins.parse_vllm_ascend(releases[1])
    assert ascend.quantizations == {"ascend", "compressed-tensors"}
    assert ascend.graph_modes == {"NONE", "PIECEWISE"}
    assert ascend.additional_config_keys == {"enable_kv_nz"}
    assert ascend.env_vars == {"VLLM_ASCEND_ENABLE_NZ"}


@pytest.mark.parametrize(
    ("extra", "env", "problem"),
    [
        ((), {}, None),
        (("--enforce-eager", "--trust-remote-code", "--quantization", "ascend"), {"VLLM_CACHE_ROOT": "/c"}, None),
        (("--max_model_len=2048",), {}, None),  # vLLM's parser takes underscores and `=`
        (("--max-num-batched-token", "8"), {}, "--max-num-batched-token: not an argument"),
        (("--enforce-eager", "yes"), {}, "--enforce-eager yes: a boolean flag takes no value"),
        (("--dtype", "float8"), {}, "--dtype float8: not one of"),
        (("--quantization", "awq"), {}, "--quantization awq: vLLM-Ascend supports"),
        (("--additional-config", '{"enable_kv_nz": true, "nz": 1}'), {}, "vLLM-Ascend reads no `nz`"),
        ((), {"VLLM_CACHE_ROT": "/c"}, "environment VLLM_CACHE_ROT"),
    ],
)
def test_check_launch(
    releases: tuple[pins.Sdist, pins.Sdist], extra: tuple[str, ...], env: dict, problem: str | None
) -> None:
    vllm, ascend = pins.parse_vllm(releases[0]), pins.parse_vllm_ascend(releases[1])
    problems = pins.check_launch(_launch(*GOOD, *extra, env=env), vllm, ascend, releases[0])
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0], problems


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({"cudagraph_mode": "FULL"}, "vLLM-Ascend's platform does not handle cudagraph_mode FULL"),
        ({"cudagraph_mode": "ALL"}, "cudagraph_mode ALL is not a CUDAGraphMode"),
        ({"cudagraph_mode": "NONE", "level": 3}, "`level` is not a CompilationConfig field"),
    ],
)
def test_compilation_config_is_checked(releases: tuple[pins.Sdist, pins.Sdist], config: dict, problem: str) -> None:
    vllm, ascend = pins.parse_vllm(releases[0]), pins.parse_vllm_ascend(releases[1])
    launch = _launch("--model", "/m", "--compilation-config", json.dumps(config))
    problems = pins.check_launch(launch, vllm, ascend, releases[0])
    assert len(problems) == 1 and problem in problems[0], problems


def test_wrong_module_is_reported(releases: tuple[pins.Sdist, pins.Sdist]) -> None:
    launch = {"argv": ["python3", "-m", "vllm.entrypoints.api_server", "--model", "/m"], "env": {}}
    problems = pins.check_launch(launch, pins.parse_vllm(releases[0]), pins.parse_vllm_ascend(releases[1]), releases[0])
    assert problems and "must start" in problems[0]


def test_vllm_requirements_follow_the_empty_target(releases: tuple[pins.Sdist, pins.Sdist]) -> None:
    reqs = pins.vllm_requirements(releases[0])
    assert reqs == [
        "regex",
        "numpy",
        "opencv-python-headless >= 4.13.0",
        'llguidance >= 1.3.0, < 1.4.0; platform_machine == "x86_64" or platform_machine == "aarch64"',
        "six>=1.16.0; python_version > '3.11'",
        "pyzmq >= 25.0.0",
        "librosa",
        "soundfile",
    ]
    # Markers are evaluated for the target: cp311 drops `six`, llguidance stays on both architectures.
    for arch in pins.ARCHES:
        names = [r.name for r in pins.applicable(reqs, arch)]
        assert "six" not in names and "llguidance" in names
    assert [r.name for r in pins.applicable(['x; platform_machine == "aarch64"'], "x86_64")] == []


def test_conflicts_name_the_requirement() -> None:
    final = {"opencv-python-headless": Version("4.11.0.86"), "numpy": Version("1.26.4")}
    reqs = [Requirement("opencv-python-headless>=4.13.0"), Requirement("numpy<2"), Requirement("absent>=1")]
    assert pins.conflicts(final, reqs) == [
        "opencv-python-headless 4.11.0.86 does not satisfy `opencv-python-headless>=4.13.0`"
    ]


def test_platform_tags_cover_the_cann_glibc() -> None:
    flags = pins.platform_flags("aarch64")
    tags = flags[1::2]
    assert tags[0] == "manylinux_2_35_aarch64" and "manylinux_2_17_aarch64" in tags and "manylinux2014_aarch64" in tags
    assert pins._glibc_ok("vllm_ascend-0.18.0-cp311-cp311-manylinux_2_24_aarch64.whl")
    assert not pins._glibc_ok("x-1-cp311-cp311-manylinux_2_39_x86_64.whl")


def test_missing_pin_is_read_from_pips_error() -> None:
    output = "ERROR: Could not find a version ...\nERROR: No matching distribution found for arctic-inference==0.1.1\n"
    assert pins._missing_pin(output) == "arctic-inference==0.1.1"


def test_pins_come_from_the_dockerfile() -> None:
    args = dockerfile_args()
    assert args["VLLM_SDIST_URL"].endswith(f"/vllm-{args['VLLM_VERSION']}.tar.gz")
    assert len(args["VLLM_SDIST_SHA256"]) == 64
    assert args["TRANSFORMERS_SPEC"] == ">=4.57.4" and args["NUMPY_SPEC"] == "<2"
    assert args["BASE_IMAGE"].startswith(f"quay.io/ascend/cann:{args['CANN_VERSION']}-910b-")
