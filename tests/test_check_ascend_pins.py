"""scripts/check_ascend_pins.py without the network: its static reading of vLLM / vLLM-Ascend source releases and its
argv, requirement and conflict checks, on small source releases laid out like the real ones (same files, the same
code patterns the parser relies on). `make check-pins` runs it against the real releases on PyPI."""

from __future__ import annotations

import dataclasses
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
            FULL_AND_PIECEWISE = (FULL, PIECEWISE)
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
                model_group.add_argument("--served-model-name", nargs="+", type=str)
                parser.add_argument("--tensor-parallel-size", "-tp", type=int)
                parser.add_argument("--max-num-seqs", type=int)
                parser.add_argument("--gpu-memory-utilization", type=float)
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
    # The shape of vLLM-Ascend 0.18.0's check_and_update_config: FULL_AND_PIECEWISE replaced by PIECEWISE, an
    # if/elif chain over the modes it runs, and an `else` that falls back to NONE.
    "vllm_ascend/platform.py": """
        class NPUPlatform:
            supported_quantization: list[str] = [ASCEND_QUANTIZATION_METHOD, COMPRESSED_TENSORS_METHOD]
            @classmethod
            def check_and_update_config(cls, compilation_config, model_config):
                if compilation_config.cudagraph_mode == CUDAGraphMode.FULL_AND_PIECEWISE:
                    compilation_config.cudagraph_mode = CUDAGraphMode.PIECEWISE
                if model_config and model_config.is_encoder_decoder is True:
                    if compilation_config.cudagraph_mode == CUDAGraphMode.FULL_DECODE_ONLY:
                        logger.warning("fallback to PIECEWISE")
                    compilation_config.cudagraph_mode = CUDAGraphMode.PIECEWISE
                if compilation_config.cudagraph_mode == CUDAGraphMode.NONE:
                    compilation_config.mode = CompilationMode.NONE
                elif compilation_config.cudagraph_mode == CUDAGraphMode.PIECEWISE:
                    compilation_config.use_inductor = False
                elif (
                    compilation_config.cudagraph_mode == CUDAGraphMode.FULL_DECODE_ONLY
                    or compilation_config.cudagraph_mode == CUDAGraphMode.FULL
                ):
                    compilation_config.splitting_ops = []
                else:
                    compilation_config.cudagraph_mode = CUDAGraphMode.NONE
                if compilation_config.cudagraph_mode != CUDAGraphMode.NONE and blocking:
                    raise ValueError("ACL graph is incompatible with ASCEND_LAUNCH_BLOCKING=1")
    """,
    "vllm_ascend/quantization/modelslim_config.py": """
        @register_quantization_config(ASCEND_QUANTIZATION_METHOD)
        class AscendModelSlimConfig:
            pass
    """,
    "vllm_ascend/quantization/compressed_tensors_config.py": """
        @register_quantization_config(COMPRESSED_TENSORS_METHOD)
        class AscendCompressedTensorsConfig:
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
    assert vllm.graph_modes == {"NONE", "PIECEWISE", "FULL", "FULL_DECODE_ONLY", "FULL_AND_PIECEWISE"}
    assert vllm.dtypes == {"auto", "half", "bfloat16", "float"}
    assert vllm.env_vars == {"VLLM_CACHE_ROOT", "VLLM_API_KEY", "VLLM_NO_USAGE_STATS"}


def test_ascend_parser_reads_platform_and_config(releases: tuple[pins.Sdist, pins.Sdist]) -> None:
    ascend = pins.parse_vllm_ascend(releases[1])
    assert ascend.quantizations == {"ascend", "compressed-tensors"}
    assert ascend.registered_quantizations == {"ascend", "compressed-tensors"}
    assert ascend.graph_modes == {"NONE", "PIECEWISE", "FULL_DECODE_ONLY", "FULL"}
    assert ascend.graph_mode_rewrites == {"FULL_AND_PIECEWISE": "PIECEWISE"}
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
        (
            {"cudagraph_mode": "FULL_AND_PIECEWISE"},
            "vLLM-Ascend's platform silently runs cudagraph_mode FULL_AND_PIECEWISE as PIECEWISE",
        ),
        ({"cudagraph_mode": "ALL"}, "cudagraph_mode ALL is not a CUDAGraphMode"),
        ({"cudagraph_mode": "NONE", "level": 3}, "`level` is not a CompilationConfig field"),
    ],
)
def test_compilation_config_is_checked(releases: tuple[pins.Sdist, pins.Sdist], config: dict, problem: str) -> None:
    vllm, ascend = pins.parse_vllm(releases[0]), pins.parse_vllm_ascend(releases[1])
    launch = _launch("--model", "/m", "--compilation-config", json.dumps(config))
    problems = pins.check_launch(launch, vllm, ascend, releases[0])
    assert len(problems) == 1 and problem in problems[0], problems


def test_a_mode_no_branch_names_falls_back_to_none() -> None:
    handled, rewrites = pins.graph_mode_handling(
        textwrap.dedent("""
            if compilation_config.cudagraph_mode == CUDAGraphMode.PIECEWISE:
                pass
            else:
                compilation_config.cudagraph_mode = CUDAGraphMode.NONE
        """)
    )
    ascend = pins.AscendArgs(handled, {"ascend"}, set(), set(), rewrites, {"ascend"})
    assert (handled, rewrites) == ({"PIECEWISE"}, {})
    assert pins.graph_mode_problem("FULL", ascend) == (
        "vLLM-Ascend's platform does not handle cudagraph_mode FULL (it falls back to NONE)"
    )
    assert pins.quantization_problem("compressed-tensors", ascend) == (
        "vLLM-Ascend supports ['ascend'] (NPUPlatform.supported_quantization)"
    )


def test_every_value_the_config_accepts_is_checked(releases: tuple[pins.Sdist, pins.Sdist], capsys) -> None:
    """Each value the config's types accept for compilation / quantization is rendered for the ascend backend: the
    accepted ones pass against the release, the refused ones are the ones vLLM-Ascend does not run."""
    assert pins.config_choices() == {
        "compilation": ["PIECEWISE", "FULL_DECODE_ONLY", "FULL", "FULL_AND_PIECEWISE", "NONE"],
        "quantization": ["ascend", "awq", "gptq", "fp8", "compressed-tensors", "bitsandbytes"],
    }
    vllm, ascend = pins.parse_vllm(releases[0]), pins.parse_vllm_ascend(releases[1])
    report = pins.Report()
    pins.check_accepted_values(vllm, ascend, releases[0], report)
    assert report.failures == [] and report.notes == []
    verdicts = [line.split(None, 1)[1] for line in capsys.readouterr().out.splitlines()]  # after "ok"
    assert verdicts == [
        "server.compilation=PIECEWISE: accepted by the config, and vLLM-Ascend 0.18.0 runs it",
        "server.compilation=FULL_DECODE_ONLY: accepted by the config, and vLLM-Ascend 0.18.0 runs it",
        "server.compilation=FULL: accepted by the config, and vLLM-Ascend 0.18.0 runs it",
        "server.compilation=FULL_AND_PIECEWISE: refused by the config (exit 2), rightly: vLLM-Ascend's platform "
        "silently runs cudagraph_mode FULL_AND_PIECEWISE as PIECEWISE",
        "server.compilation=NONE: accepted by the config, and vLLM-Ascend 0.18.0 runs it",
        "server.quantization=ascend: accepted by the config, and vLLM-Ascend 0.18.0 runs it",
        *(
            f"server.quantization={method}: refused by the config (exit 2), rightly: vLLM-Ascend supports "
            "['ascend', 'compressed-tensors'] (NPUPlatform.supported_quantization)"
            for method in ("awq", "gptq", "fp8")
        ),
        "server.quantization=compressed-tensors: accepted by the config, and vLLM-Ascend 0.18.0 runs it",
        "server.quantization=bitsandbytes: refused by the config (exit 2), rightly: vLLM-Ascend supports "
        "['ascend', 'compressed-tensors'] (NPUPlatform.supported_quantization)",
    ]


def test_an_accepted_value_upstream_does_not_run_fails(releases: tuple[pins.Sdist, pins.Sdist], capsys) -> None:
    """A release whose platform does not run FULL, supports no compressed-tensors and rewrites FULL_AND_PIECEWISE
    differently: the values the config accepts fail the check, and so does the config's account of the rewrite; a
    value the config refuses although the release runs it is a note."""
    vllm, ascend = pins.parse_vllm(releases[0]), pins.parse_vllm_ascend(releases[1])
    narrower = dataclasses.replace(
        ascend,
        graph_modes=ascend.graph_modes - {"FULL"},
        graph_mode_rewrites={"FULL_AND_PIECEWISE": "NONE"},
        quantizations={"ascend", "awq"},
        registered_quantizations={"ascend", "awq"},
    )
    report = pins.Report()
    pins.check_accepted_values(vllm, narrower, releases[0], report)
    assert report.failures == [
        "config.ASCEND_GRAPH_MODE_REWRITES is {'FULL_AND_PIECEWISE': 'PIECEWISE'}, vLLM-Ascend's platform.py rewrites "
        "{'FULL_AND_PIECEWISE': 'NONE'}",
        "server.compilation=FULL: the config accepts it for the ascend backend, but --compilation-config: "
        "vLLM-Ascend's platform does not handle cudagraph_mode FULL (it falls back to NONE)",
        "server.quantization=compressed-tensors: the config accepts it for the ascend backend, but --quantization "
        "compressed-tensors: vLLM-Ascend supports ['ascend', 'awq'] (NPUPlatform.supported_quantization)",
    ]
    [note] = report.notes
    assert note.startswith("server.quantization=awq: refused by the config, but vLLM-Ascend 0.18.0 runs it: error: ")


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


def test_a_refusal_whose_upstream_reason_is_gone_fails_the_check(tmp_path: Path) -> None:
    """combinations.py's rules against a release that still has their reasons, and one that changed: the error text
    is gone from platform.py and `torchair_graph_config` is read again."""
    from llama_ascend.combinations import UPSTREAM_TEXTS

    files = {member: "\n".join(texts) + "\n" for member, texts in UPSTREAM_TEXTS.items()}
    report = pins.Report()
    pins.check_combination_sources(_sdist(tmp_path / "same.tar.gz", "vllm_ascend-0.18.0", files), report)
    assert report.failures == []
    changed = {
        **files,
        "vllm_ascend/platform.py": files["vllm_ascend/platform.py"].replace("Flash Comm v1", "FlashComm v1"),
        "vllm_ascend/torchair.py": 'enabled = additional_config.get("torchair_graph_config", {})\n',
    }
    report = pins.Report()
    pins.check_combination_sources(_sdist(tmp_path / "changed.tar.gz", "vllm_ascend-0.18.0", changed), report)
    assert report.failures == [
        "combinations: vllm_ascend/platform.py no longer has 'Flash Comm v1 is only supported when tp_size > 1': "
        "review the rule in combinations.py",
        "combinations: vLLM-Ascend reads additional_config `torchair_graph_config` again: do not refuse it",
    ]
