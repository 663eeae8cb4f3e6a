"""Rewrite a llama-cpp-python wheel without the copies its build leaves in it.

A wheel cannot hold symbolic links, so each shared library of a CUDA build lands six times
(``libX.so``, ``libX.so.0`` and ``libX.so.0.N.M``, under both ``lib/`` and
``llama_cpp/lib/``): 255 MiB for one 57 MiB ``libggml-cuda.so``. What is loaded is only
``llama_cpp/lib``: Python opens ``libllama.so``, ``libggml.so`` and ``libmtmd.so`` by those
names, and the libraries find each other by their SONAME (``libggml-cuda.so.0``, ...)
through ``RUNPATH=$ORIGIN``. This keeps exactly those files, drops the top-level ``lib/``,
``include/`` and ``bin/`` trees (headers, CMake files, tools), and writes a new RECORD.

    python scripts/slim-wheel.py WHEEL [--out SLIM_WHEEL]

Without ``--out`` the wheel is replaced in place. Prints the sizes before and after.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import re
import zipfile
from pathlib import Path

LOADED_BY_NAME = {"libllama.so", "libggml.so", "libmtmd.so"}
"""Opened by llama_cpp's ctypes loader under these exact names."""

DROPPED_TREES = ("lib/", "include/", "bin/")


def keep(path: str, versions: dict[str, set[str]]) -> bool:
    if path.startswith(DROPPED_TREES):
        return False
    if not path.startswith("llama_cpp/lib/"):
        return True
    name = path.rsplit("/", 1)[1]
    if name in LOADED_BY_NAME:
        return True
    base = re.sub(r"(\.\d+)+$", "", name)  # libX.so
    soname = f"{base}.{min(versions[base])}" if versions.get(base) else None
    return name == soname


def slim(src: Path, dst: Path) -> None:
    with zipfile.ZipFile(src) as zin:
        names = zin.namelist()
        versions: dict[str, set[str]] = {}
        for n in names:
            if n.startswith("llama_cpp/lib/"):
                m = re.fullmatch(r"llama_cpp/lib/(lib[\w.+-]*?\.so)\.(\d+)", n)
                if m:
                    versions.setdefault(m.group(1), set()).add(m.group(2))
        record_name = next(n for n in names if n.endswith(".dist-info/RECORD"))
        kept = [n for n in names if n != record_name and keep(n, versions)]
        buf = io.BytesIO()
        rows = []
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zout:
            for n in kept:
                info = zin.getinfo(n)
                data = zin.read(n)
                zout.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
                digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
                rows.append((n, f"sha256={digest.decode()}", str(len(data))))
            rows.append((record_name, "", ""))
            text = io.StringIO()
            csv.writer(text, lineterminator="\n").writerows(rows)
            zout.writestr(record_name, text.getvalue())
    dst.write_bytes(buf.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    out = args.out or args.wheel
    before = args.wheel.stat().st_size
    slim(args.wheel, out)
    print(f"slim-wheel: {before / 2**20:.0f} MiB -> {out.stat().st_size / 2**20:.0f} MiB ({out})")


if __name__ == "__main__":
    main()
