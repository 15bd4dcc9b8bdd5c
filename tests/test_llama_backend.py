"""llama.cpp runs CPU code this machine has: the loaded backend matches /proc/cpuinfo (no model needed)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/cpuinfo")

# What each x86 CPU variant of ggml (ggml/src/CMakeLists.txt) needs, as /proc/cpuinfo names it,
# and the score ggml's cpu-feats.cpp gives each feature (the best-scoring variant that fits is loaded).
_AVX512 = {"avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"}
_SCORE = {
    "fma": 1, "f16c": 2, "sse4_2": 4, "bmi2": 8, "avx": 16, "avx2": 32, "avx_vnni": 64,
    "avx512f": 128, "avx512vbmi": 256, "avx512_bf16": 512, "avx512_vnni": 1024, "amx_int8": 2048,
}  # fmt: skip
_HASWELL = {"sse4_2", "avx", "f16c", "fma", "avx2", "bmi2"}
VARIANTS: dict[str, set[str]] = {
    "x64": set(),
    "sse42": {"sse4_2"},
    "sandybridge": {"sse4_2", "avx"},
    "ivybridge": {"sse4_2", "avx", "f16c"},
    "piledriver": {"sse4_2", "avx", "f16c", "fma"},
    "haswell": _HASWELL,
    "skylakex": _HASWELL | _AVX512,
    "cannonlake": _HASWELL | _AVX512 | {"avx512vbmi"},
    "cascadelake": _HASWELL | _AVX512 | {"avx512_vnni"},
    "icelake": _HASWELL | _AVX512 | {"avx512vbmi", "avx512_vnni"},
    "cooperlake": _HASWELL | _AVX512 | {"avx512_vnni", "avx512_bf16"},
    "zen4": _HASWELL | _AVX512 | {"avx512vbmi", "avx512_vnni", "avx512_bf16"},
    "alderlake": _HASWELL | {"avx_vnni"},
    "sapphirerapids": _HASWELL | _AVX512 | {"avx512vbmi", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8"},
}
# llama_print_system_info() names → /proc/cpuinfo flags (entries like REPACK or OPENMP are not instructions).
SYSTEM_INFO_FLAGS = {
    "SSE3": "pni", "SSSE3": "ssse3", "AVX": "avx", "AVX2": "avx2", "F16C": "f16c", "FMA": "fma", "BMI2": "bmi2",
    "AVX_VNNI": "avx_vnni", "AVX512": "avx512f", "AVX512_VBMI": "avx512vbmi", "AVX512_VNNI": "avx512_vnni",
    "AVX512_BF16": "avx512_bf16", "AMX_INT8": "amx_int8",
}  # fmt: skip


def cpu_flags() -> set[str]:
    text = Path("/proc/cpuinfo").read_text()
    return set(re.search(r"^flags\s*:(.*)$", text, re.M).group(1).split())  # type: ignore[union-attr]


def score(variant: str) -> int:
    return 1 + sum(_SCORE.get(flag, 0) for flag in VARIANTS[variant])


def test_llama_cpp_uses_only_instructions_this_cpu_has() -> None:
    import llama_cpp

    from rag.generation import load_cpu_backend

    load_cpu_backend()
    info = llama_cpp.llama_print_system_info().decode()
    used = {name for name, on in re.findall(r"(\w+) = (\d)", info) if on == "1"}
    assert used & set(SYSTEM_INFO_FLAGS), f"no CPU backend loaded? {info}"
    missing = {name for name in used if name in SYSTEM_INFO_FLAGS and SYSTEM_INFO_FLAGS[name] not in cpu_flags()}
    assert not missing, f"llama.cpp uses {sorted(missing)}, which this CPU or its kernel does not grant: {info}"


def test_the_best_shipped_cpu_variant_for_this_cpu_is_loaded() -> None:
    from rag.generation import _llama_lib_dir, load_cpu_backend

    shipped = {
        m.group(1)
        for p in _llama_lib_dir().glob("libggml-cpu-*.so")
        if (m := re.match(r"libggml-cpu-(.+)\.so$", p.name))
    }
    if not shipped:
        pytest.skip("llama-cpp-python was built with one CPU backend (no GGML_BACKEND_DL); see the Makefile")
    assert not shipped & {"sapphirerapids"}, "AMX variants crash where the kernel refuses tile data; keep them out"
    flags = cpu_flags()
    fitting = [v for v in shipped if v in VARIANTS and VARIANTS[v] <= flags]
    expected = max(fitting, key=score)
    assert load_cpu_backend() == expected, (sorted(shipped), sorted(flags & set(_SCORE)))


def test_a_quantized_attention_cache_without_flash_attention_is_refused_with_the_fix(tmp_path: Path) -> None:
    from rag.errors import ModelError
    from rag.generation import open_llama

    with pytest.raises(ModelError, match="RAG_FLASH_ATTN=1"):
        open_llama(tmp_path / "model.gguf", kv_cache_type="q8_0", flash_attn=False)
    with pytest.raises(ModelError, match="not one of"):
        open_llama(tmp_path / "model.gguf", kv_cache_type="q4_x", flash_attn=True)


def test_llama_options_come_from_the_environment() -> None:
    from rag.config import Settings

    s = Settings.from_env({"RAG_FLASH_ATTN": "1", "RAG_KV_CACHE_TYPE": "q8_0", "RAG_N_UBATCH": "256"})
    assert (s.flash_attn, s.kv_cache_type, s.n_ubatch) == (True, "q8_0", 256)


def test_plain_llama_cpp_finds_its_cpu_backend_quietly() -> None:
    """`python -m llama_cpp.server` or a bare `Llama(...)` (no rag code) must get a CPU backend, with no log noise."""
    import subprocess

    from rag.generation import _llama_lib_dir

    if not any(_llama_lib_dir().glob("libggml-cpu-*.so")):
        pytest.skip("llama-cpp-python was built with one CPU backend (no GGML_BACKEND_DL); see the Makefile")
    code = (
        "import ctypes\n"
        "from llama_cpp import llama_cpp as b\n"
        "b._lib.ggml_backend_reg_by_name.argtypes = [ctypes.c_char_p]\n"
        "b._lib.ggml_backend_reg_by_name.restype = ctypes.c_void_p\n"
        "print(bool(b._lib.ggml_backend_reg_by_name(b'CPU')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True", "llama_cpp imported without a CPU backend: rebuild with the Makefile's patch"
    assert proc.stderr == "", proc.stderr
