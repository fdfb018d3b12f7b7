"""Build perflab's extensions in place one at a time, so that one that cannot build (the CPU-only
XLA FFI kernels against another jaxlib's headers, say) leaves the others built; the benchmarks
of a missing extension skip with the reason.

Usage: python tools/gpu/build_ext.py   (from the repository root; exit 0 whatever failed)
"""

from __future__ import annotations

import runpy
import subprocess
import sys


def _run_setup(keep):
    # setup.py calls setuptools.setup(ext_modules=[...]); the patched setup keeps the
    # extensions `keep` accepts, or only records their names when `keep` is None.
    import setuptools

    names = []
    original = setuptools.setup

    def setup(**kwargs):
        modules = kwargs.get("ext_modules") or []
        names.extend(m.name for m in modules)
        if keep is None:
            return None
        kwargs["ext_modules"] = [m for m in modules if keep(m.name)]
        return original(**kwargs)

    setuptools.setup = setup
    sys.argv = ["setup.py", "build_ext", "--inplace"]
    runpy.run_path("setup.py", run_name="__main__")
    return names


def main(argv):
    if argv[:1] == ["--list"]:
        print("\n".join(_run_setup(None)))
        return 0
    if argv[:1] == ["--one"]:
        _run_setup(lambda name: name == argv[1])
        return 0
    listed = subprocess.run([sys.executable, __file__, "--list"], capture_output=True, text=True)
    if listed.returncode != 0:
        print(f"setup.py could not be read; no extension built:\n{listed.stderr[-3000:]}")
        return 0
    names = [line for line in listed.stdout.splitlines() if line.startswith("perflab.")]
    # --list has cythonized every .pyx already, so the builds below share no file and run at once.
    procs = {
        name: subprocess.Popen(
            [sys.executable, __file__, "--one", name], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for name in names
    }
    failed = []
    for name, proc in procs.items():
        out, err = proc.communicate()
        print(f"build_ext {name}: {'ok' if proc.returncode == 0 else 'FAILED (its benchmarks skip)'}")
        if proc.returncode != 0:
            failed.append(name)
            print(out[-1500:] + err[-3000:])
    print(f"extensions built: {len(names) - len(failed)} of {len(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
