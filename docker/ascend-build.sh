# shellcheck shell=bash
# Sourced by the ascend target's RUN steps after build-env.sh (bind-mounted, never copied into a layer): the
# decisions those steps share, as functions of the build args. tests/test_image_ascend.py runs them outside a build.

_la_toolkit_env=/usr/local/Ascend/ascend-toolkit/set_env.sh
_la_atb_env=/usr/local/Ascend/nnal/atb/set_env.sh
_la_wheels=/tmp/wheels  # docker/wheels, bind-mounted

# check_base: the build args agree with the base. A real CANN base has the toolkit's and NNAL's set_env.sh; only
# CANN_STANDIN=1 builds without them, and CANN_STANDIN=1 on a base that has CANN is an error too (it would label a
# product image a stand-in and allow STANDIN_CUDA_TORCH).
check_base() {
    case "${CANN_STANDIN:-0}/${STANDIN_CUDA_TORCH:-0}" in
        0/0 | 1/0 | 1/1) ;;
        0/1)
            echo "error: STANDIN_CUDA_TORCH=1 needs CANN_STANDIN=1: a CUDA torch is accepted only in a stand-in build" >&2
            return 1
            ;;
        *)
            echo "error: CANN_STANDIN and STANDIN_CUDA_TORCH take 0 or 1 (got ${CANN_STANDIN:-}/${STANDIN_CUDA_TORCH:-})" >&2
            return 1
            ;;
    esac
    if [ "${CANN_STANDIN:-0}" = 1 ]; then
        if [ -e "$_la_toolkit_env" ]; then
            echo "error: CANN_STANDIN=1, but this base has CANN ($_la_toolkit_env): build without CANN_STANDIN" >&2
            return 1
        fi
        echo "CANN_STANDIN=1: a stand-in base without CANN; this image cannot drive an NPU"
        return 0
    fi
    for _la_script in "$_la_toolkit_env" "$_la_atb_env"; do
        if [ ! -f "$_la_script" ]; then
            echo "error: $_la_script is missing: BASE_IMAGE is not a CANN ${CANN_VERSION:-} base with NNAL" \
                "(CANN_STANDIN=1 builds on CI's stand-in without CANN, for tests only)" >&2
            return 1
        fi
    done
}

# source_cann: the CANN environment for a step that compiles against it (vllm-ascend from source) and the driver
# stubs in `devlib`; nothing on the stand-in, which check_base has let through.
source_cann() {
    if [ "${CANN_STANDIN:-0}" = 1 ]; then
        return 0
    fi
    # shellcheck disable=SC1090
    . "$_la_toolkit_env"
    # shellcheck disable=SC1090
    . "$_la_atb_env"
    export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}:/usr/local/Ascend/ascend-toolkit/latest/$(uname -m)-linux/devlib"
}

# torch_local: the local version of the torch builds this image takes. PyPI's x86_64 torch is the CUDA build, so
# x86_64 takes `+cpu` (the PyTorch CPU index or docker/wheels) unless a stand-in build says otherwise; PyPI's aarch64
# torch is the CPU build.
torch_local() {
    if [ "$(uname -m)" = x86_64 ] && [ "${STANDIN_CUDA_TORCH:-0}" != 1 ]; then
        echo "+cpu"
    fi
}

# torch_pin: torch as a requirement.
torch_pin() {
    echo "torch==${TORCH_VERSION}$(torch_local)"
}

# torch_pins: torch, torchvision and torchaudio as requirements, one per line.
torch_pins() {
    _la_local="$(torch_local)"
    printf '%s\n' "torch==${TORCH_VERSION}${_la_local}" "torchvision==${TORCHVISION_VERSION}${_la_local}" \
        "torchaudio==${TORCHAUDIO_VERSION}${_la_local}"
}

# pip_sources: where the build's pip looks besides its index: docker/wheels, and the PyTorch CPU index when set.
pip_sources() {
    printf '%s\n' --find-links "$_la_wheels"
    if [ -n "${TORCH_INDEX_URL:-}" ]; then
        printf '%s\n' --extra-index-url "$TORCH_INDEX_URL"
    fi
}

# vllm_source: the vLLM source release as a pip requirement: docker/wheels' copy when it holds one, else the URL;
# the sha256 pins the file either way.
vllm_source() {
    _la_sdist="${_la_wheels}/${VLLM_SDIST_URL##*/}"
    if [ -f "$_la_sdist" ]; then
        echo "vllm[audio] @ file://${_la_sdist}#sha256=${VLLM_SDIST_SHA256}"
    else
        echo "vllm[audio] @ ${VLLM_SDIST_URL}#sha256=${VLLM_SDIST_SHA256}"
    fi
}

# drop_upstream_triton: xgrammar (and PyPI's CUDA torch) pull upstream triton on x86_64; it has no Ascend backend.
# Removed in the layer that installed it, before triton-ascend is in: both own the triton/ directory, and
# uninstalling one deletes the other's files.
drop_upstream_triton() {
    if pip show triton >/dev/null 2>&1; then
        pip uninstall -y triton
    fi
}

# dev_wheels: the Huawei-built torch_npu / triton_ascend the official image layers on top, only with pinned hashes.
dev_wheels() {
    if [ -z "${ASCEND_DEV_WHEELS_URL:-}" ]; then
        echo "no ASCEND_DEV_WHEELS_URL: torch-npu ${TORCH_NPU_VERSION} and triton-ascend ${TRITON_ASCEND_VERSION} from PyPI stay"
        return 0
    fi
    case "$(uname -m)" in
        x86_64)
            _la_npu="$TORCH_NPU_DEV_WHEEL_X86_64" _la_npu_sha="${TORCH_NPU_DEV_SHA256_X86_64:-}" _la_sfx=X86_64
            _la_triton="$TRITON_ASCEND_DEV_WHEEL_X86_64" _la_triton_sha="${TRITON_ASCEND_DEV_SHA256_X86_64:-}"
            ;;
        aarch64)
            _la_npu="$TORCH_NPU_DEV_WHEEL_AARCH64" _la_npu_sha="${TORCH_NPU_DEV_SHA256_AARCH64:-}" _la_sfx=AARCH64
            _la_triton="$TRITON_ASCEND_DEV_WHEEL_AARCH64" _la_triton_sha="${TRITON_ASCEND_DEV_SHA256_AARCH64:-}"
            ;;
        *)
            echo "error: no torch_npu/triton_ascend dev wheels for $(uname -m)" >&2
            return 1
            ;;
    esac
    if [ -z "$_la_npu_sha" ] || [ -z "$_la_triton_sha" ]; then
        echo "error: ASCEND_DEV_WHEELS_URL is set but TORCH_NPU_DEV_SHA256_${_la_sfx} and" \
            "TRITON_ASCEND_DEV_SHA256_${_la_sfx} are not both set: the dev wheels go in only with pinned hashes" \
            "(sha256sum of ${_la_npu} and ${_la_triton}); or build with ASCEND_DEV_WHEELS_URL= for PyPI's" >&2
        return 1
    fi
    # The dev triton_ascend replaces 3.2.0 file by file (same triton/ directory, no upstream triton left).
    # shellcheck disable=SC2046
    pip install $(pip_sources) "${ASCEND_DEV_WHEELS_URL%/}/${_la_triton}#sha256=${_la_triton_sha}"
    # shellcheck disable=SC2046
    pip install $(pip_sources) "${ASCEND_DEV_WHEELS_URL%/}/${_la_npu}#sha256=${_la_npu_sha}"
}
