"""Build the playground: `python docs/playground/build.py [--out DIR]` (default docs/playground/site/).

The result is a static folder: open its index.html from disk or serve it with
any static server. It holds

* runtime.js: Pyodide's runtime from the npm registry (the `pyodide` package,
  PYODIDE version): the loader pyodide.js as shipped, pyodide.asm.mjs turned
  into a classic script, and the wasm, standard library (base64) and lock file;
  the page starts them in a Web Worker made from a Blob;
* app-data.js: the lark wheel from PyPI (pure Python), a wheel of this checkout
  of diagrammar, the zoo, playground.py and a numpy stand-in that fails
  loudly (Pyodide's numpy is not in the npm package; see below);
* index.html, playground.js and playground.css from this folder.

Only classic <script> tags load it: browsers refuse fetch(), ES modules and
worker script files on file:// pages, so nothing is fetched.

Downloads are cached in ~/.cache/diagrammar/playground (or $DIAGRAMMAR_CACHE).
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PYODIDE = "314.0.8"
DEFAULT_EXAMPLE = "transformer.circuit"
RUNTIME_FILES = ("pyodide.js", "pyodide.asm.mjs", "pyodide.asm.wasm", "python_stdlib.zip", "pyodide-lock.json")

# The playground has no numpy. The renderer draws without it (it falls back to plain Python on an
# ImportError); any other import of numpy fails with this sentence instead of a bare "no module".
NUMPY_STUB = '''"""Stand-in for numpy in the playground, which has none (Pyodide's numpy is not in its npm package)."""
raise ImportError(
    "this build of diagrammar's SVG renderer imports numpy, which the playground does not ship "
    "(Pyodide's numpy is not in the npm package); the checker works, but no figure can be drawn "
    "in the browser until the renderer is numpy-free. Use `diagrammar serve FILE` meanwhile.")
'''

INSTALL = '''
import os, sys, sysconfig, zipfile
site = sysconfig.get_paths()["purelib"]
for name in sorted(os.listdir("/tmp/wheels")):
    with zipfile.ZipFile("/tmp/wheels/" + name) as z:
        z.extractall(site)
os.makedirs(os.path.join(site, "numpy"), exist_ok=True)
with open("/tmp/numpy_stub.py") as f, open(os.path.join(site, "numpy", "__init__.py"), "w") as g:
    g.write(f.read())
import importlib; importlib.invalidate_caches()
'''


def cache_dir() -> Path:
    d = Path(os.environ.get("DIAGRAMMAR_CACHE") or Path.home() / ".cache" / "diagrammar") / "playground"
    d.mkdir(parents=True, exist_ok=True)
    return d


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    print("+", " ".join(cmd), file=sys.stderr)
    return subprocess.run(cmd, check=True, **kw)


def pyodide_runtime(cache: Path) -> dict[str, bytes]:
    """The runtime files of the pyodide npm package (downloaded once with `npm pack`)."""
    tgz = cache / f"pyodide-{PYODIDE}.tgz"
    if not tgz.exists():
        if shutil.which("npm") is None:
            sys.exit("build.py: npm is needed to fetch the pyodide package from the npm registry")
        with tempfile.TemporaryDirectory() as tmp:
            run(["npm", "pack", f"pyodide@{PYODIDE}", "--pack-destination", tmp], stdout=subprocess.DEVNULL)
            shutil.move(next(Path(tmp).glob("pyodide-*.tgz")), tgz)
    out = {}
    with tarfile.open(tgz) as tar:
        for name in RUNTIME_FILES:
            out[name] = tar.extractfile(f"package/{name}").read()
    return out


def classic_asm(mjs: bytes) -> bytes:
    """pyodide.asm.mjs as a classic script: `import.meta.url` becomes a global, `export default` a global."""
    text = mjs.decode("utf-8")
    export = "export default _createPyodideModule;"
    if text.count(export) != 1 or "import.meta.url" not in text:
        sys.exit("build.py: pyodide.asm.mjs does not have the shape this build expects; check PYODIDE")
    text = text.replace(export, "globalThis._createPyodideModule = _createPyodideModule;")
    text = text.replace("import.meta.url", "globalThis.__diagrammarAsmUrl")
    if "import.meta" in text:
        sys.exit("build.py: pyodide.asm.mjs uses import.meta in a way this build does not handle")
    return text.encode("utf-8")


def lark_wheel(cache: Path) -> Path:
    import lark

    version = lark.__version__
    found = sorted(cache.glob(f"lark-{version}-py3-none-any.whl"))
    if not found:
        run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
             "-d", str(cache), f"lark=={version}"])
        found = sorted(cache.glob(f"lark-{version}-py3-none-any.whl"))
    if not found:
        sys.exit(f"build.py: no pure-Python wheel of lark {version} was found")
    return found[0]


def diagrammar_wheel(tmp: Path) -> Path:
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp), str(ROOT)])
    return next(tmp.glob("diagrammar-*.whl"))


def renderer_imports_numpy() -> bool:
    """Whether drawing a zoo circuit fails here when numpy cannot be imported (the playground has none)."""
    probe = ("import sys\n"
             "class NoNumpy:\n"
             "    def find_spec(self, name, path=None, target=None):\n"
             "        if name == 'numpy' or name.startswith('numpy.'):\n"
             "            raise ImportError('no numpy in the playground')\n"
             "sys.meta_path.insert(0, NoNumpy())\n"
             "import diagrammar\n"
             "from diagrammar.backends.svg import render_svg\n"
             "p = diagrammar.load('circuits/transformer.circuit'); render_svg(p['Decoder'], depth=None)\n"
             "print('drawn without numpy')\n")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True)
    return "drawn without numpy" not in out.stdout


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def js_assign(name: str, value) -> bytes:
    return f"globalThis.{name} = {json.dumps(value, separators=(',', ':'))};\n".encode("utf-8")


def build(out: Path) -> dict:
    cache = cache_dir()
    runtime = pyodide_runtime(cache)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / "runtime.js").write_bytes(js_assign("DIAGRAMMAR_RUNTIME", {
        "version": PYODIDE, "loader": runtime["pyodide.js"].decode("utf-8"),
        "asm": classic_asm(runtime["pyodide.asm.mjs"]).decode("utf-8"),
        "wasm": b64(runtime["pyodide.asm.wasm"]), "stdlib": b64(runtime["python_stdlib.zip"]),
        "lock": runtime["pyodide-lock.json"].decode("utf-8")}))
    with tempfile.TemporaryDirectory() as tmp:
        wheels = [lark_wheel(cache), diagrammar_wheel(Path(tmp))]
        wheel_data = [{"name": w.name, "data": b64(w.read_bytes())} for w in wheels]
    zoo = [{"file": p.name, "text": p.read_text(encoding="utf-8")} for p in sorted((ROOT / "circuits").glob("*.circuit"))]
    needs_numpy = renderer_imports_numpy()
    (out / "app-data.js").write_bytes(js_assign("DIAGRAMMAR_APP", {
        "wheels": wheel_data, "zoo": zoo, "default_example": DEFAULT_EXAMPLE,
        "glue": (HERE / "playground.py").read_text(encoding="utf-8"), "install": INSTALL,
        "numpy_stub": NUMPY_STUB, "renderer_needs_numpy": needs_numpy}))
    for name in ("index.html", "playground.js", "playground.css"):
        shutil.copy(HERE / name, out / name)
    (out / "NOTICE.txt").write_text(
        f"Pyodide {PYODIDE} (npm package `pyodide`) is MPL-2.0 licensed: https://github.com/pyodide/pyodide\n"
        "lark is MIT licensed. diagrammar is MIT licensed.\n", encoding="utf-8")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file())).hexdigest()[:12]
    info = {"out": str(out), "bytes": size, "wheels": [w["name"] for w in wheel_data],
            "renderer_needs_numpy": needs_numpy, "digest": digest}
    if needs_numpy:
        print("build.py: WARNING: the SVG renderer still imports numpy; the playground will check programs but "
              "show a loud error instead of figures until it no longer does", file=sys.stderr)
    return info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "site", help="the folder to write (replaced)")
    args = ap.parse_args(argv)
    info = build(args.out.resolve())
    print(f"playground: {info['out']} ({info['bytes'] / 1e6:.1f} MB; {', '.join(info['wheels'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
