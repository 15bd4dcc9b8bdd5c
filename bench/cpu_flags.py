"""llama.cpp CPU backend build flags (GGML_CPU_REPACK, GGML_LLAMAFILE, GGML_OPENMP) on and off, same prompts.

    python bench/speed.py --dump-prompts /tmp/prompts.json
    python bench/cpu_flags.py /tmp/prompts.json [--runs 3] [--src DIR] [--only NAME ...]

With GGML_BACKEND_DL the CPU code is a module of its own (libggml-cpu-<variant>.so), so one flag
costs a build of that module only, not of llama.cpp: this script configures the llama.cpp sources
of the installed llama-cpp-python version (downloaded once, patched like the Makefile) once per
flag set, builds the variant this CPU loads, and times each module in a fresh process
(`bench/llama_options.py` with `LLAMA_CPP_LIB_PATH` on a copy of the package's
`lib/` holding that module), the flag sets in turn within every run. "installed" is
the module in the installed wheel (all three flags on, the default).
Build directories are kept in ~/.cache/kiji-qa/cpu-flags (a second run only times).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CACHE = Path.home() / ".cache" / "kiji-qa" / "cpu-flags"
FLAG_SETS = {
    "repack-off": ["-DGGML_CPU_REPACK=OFF"],
    "llamafile-off": ["-DGGML_LLAMAFILE=OFF"],
    "openmp-off": ["-DGGML_OPENMP=OFF"],
}
# The Makefile's build, minus what only the wheel needs.
BASE_ARGS = ["-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=OFF", "-DGGML_BACKEND_DL=ON",
             "-DGGML_CPU_ALL_VARIANTS=ON", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
             "-DLLAMA_BUILD_TOOLS=OFF", "-DLLAMA_BUILD_SERVER=OFF", "-DLLAMA_CURL=OFF"]  # fmt: skip


def sources(version: str) -> Path:
    """llama.cpp as vendored by llama-cpp-python VERSION, with the Makefile's variant-list patch."""
    src = CACHE / f"llama_cpp_python-{version}"
    if not src.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-d", str(CACHE),
             f"llama-cpp-python=={version}"],
            check=True,
        )  # fmt: skip
        with tarfile.open(CACHE / f"llama_cpp_python-{version}.tar.gz") as tar:
            tar.extractall(CACHE, filter="data")
        patch = (ROOT / "patches" / "llama-cpp-python.patch").read_bytes()
        subprocess.run(["patch", "-p1", "-d", str(src)], input=patch, check=True)
    return src / "vendor" / "llama.cpp"


def build(name: str, flags: list[str], variant: str, version: str) -> tuple[Path, float]:
    """The CPU module of VARIANT built with FLAGS; (its path, build seconds; 0 when cached)."""
    out = CACHE / f"build-{name}"
    module = out / "bin" / f"libggml-cpu-{variant}.so"
    if module.exists():
        return module, 0.0
    t0 = time.perf_counter()
    subprocess.run(
        [
            "cmake",
            "-S",
            str(sources(version)),
            "-B",
            str(out),
            *BASE_ARGS,
            f"-DGGML_CPU_VARIANT_LIST={variant}",
            *flags,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    subprocess.run(["cmake", "--build", str(out), "--target", f"ggml-cpu-{variant}"], check=True)
    return module, time.perf_counter() - t0


def lib_dir(name: str, module: Path) -> Path:
    """A copy of the installed llama_cpp/lib with MODULE as its only CPU backend (for LLAMA_CPP_LIB_PATH)."""
    from rag.generation import _llama_lib_dir

    out = CACHE / f"lib-{name}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for f in _llama_lib_dir().iterdir():
        if not f.name.startswith("libggml-cpu-"):
            shutil.copy2(f, out / f.name)
    shutil.copy2(module, out / module.name)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prompts", type=Path, help="written by bench/speed.py --dump-prompts")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", nargs="*", choices=sorted(FLAG_SETS), help="flag sets to build and time")
    args = parser.parse_args()

    import llama_cpp

    from rag.generation import _llama_lib_dir, load_cpu_backend

    variant = load_cpu_backend()
    if variant is None:
        raise SystemExit("the installed llama-cpp-python has one CPU backend built in: build it with the Makefile")
    modules = {"installed": _llama_lib_dir() / f"libggml-cpu-{variant}.so"}
    build_s = {}
    for name in args.only or FLAG_SETS:
        modules[name], build_s[name] = build(name, FLAG_SETS[name], variant, llama_cpp.__version__)

    libs = {name: lib_dir(name, module) for name, module in modules.items()}
    results: dict[str, dict[str, list[float]]] = {name: {} for name in modules}
    texts: dict[str, list[str]] = {}
    for _ in range(args.runs):
        for name in modules:
            proc = subprocess.run(
                [sys.executable, str(ROOT / "bench" / "llama_options.py"), str(args.prompts), "", "--runs", "1", "--json"],
                capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT), "LLAMA_CPP_LIB_PATH": str(libs[name])},
            )  # fmt: skip
            if proc.returncode != 0:
                raise SystemExit(f"{name}: {proc.stderr[-2000:]}")
            result = json.loads(proc.stdout.strip().splitlines()[-1])[0]
            for key in ("prompt_tps", "gen_tps", "ttft"):
                results[name].setdefault(key, []).extend(result[key])
            texts[name] = result["texts"]

    med = statistics.median
    base = results["installed"]
    print(f"CPU variant {variant}; {len(texts['installed'])} prompts x {args.runs} runs, modules in turn")
    print("| CPU module | build s | prompt tok/s | vs installed | generation tok/s | vs installed | same answers |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        same = sum(a == b for a, b in zip(texts[name], texts["installed"], strict=True))
        built = f"{build_s[name]:.0f}" if build_s.get(name) else "–"
        print(
            f"| {name} | {built} | {med(r['prompt_tps']):.1f} | {med(r['prompt_tps']) / med(base['prompt_tps']):.2f}x | "
            f"{med(r['gen_tps']):.1f} | {med(r['gen_tps']) / med(base['gen_tps']):.2f}x | "
            f"{same}/{len(texts[name])} |"
        )


if __name__ == "__main__":
    main()
