"""scripts/slim-wheel.py on a small wheel laid out like a llama-cpp-python CUDA build."""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.util
import io
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_script():
    spec = importlib.util.spec_from_file_location("slim_wheel", ROOT / "scripts" / "slim-wheel.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LIBS = {"llama": "0.5.0", "ggml": "0.25.3", "ggml-base": "0.25.3", "ggml-cuda": "0.25.3",
        "mtmd": "0.5.0"}  # fmt: skip


def build_wheel(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("llama_cpp/__init__.py", "")
        z.writestr("llama_cpp-0.3.36.dist-info/METADATA", "Name: llama_cpp_python\n")
        for name, version in LIBS.items():
            major = version.split(".")[0]
            for suffix in ("", f".{major}", f".{version}"):
                for folder in ("lib", "llama_cpp/lib"):
                    z.writestr(f"{folder}/lib{name}.so{suffix}", f"code of {name}")
        z.writestr("include/llama.h", "header")
        z.writestr("bin/llama-cli", "tool")
        z.writestr("llama_cpp-0.3.36.dist-info/RECORD", "stale\n")


def test_keeps_the_loaded_names_and_the_sonames_once(tmp_path: Path) -> None:
    fat, slim = tmp_path / "fat.whl", tmp_path / "slim.whl"
    build_wheel(fat)
    load_script().slim(fat, slim)
    with zipfile.ZipFile(slim) as z:
        names = set(z.namelist())
        libs = sorted(n.rsplit("/", 1)[1] for n in names if n.startswith("llama_cpp/lib/"))
        assert libs == [
            "libggml-base.so.0", "libggml-cuda.so.0", "libggml.so", "libggml.so.0",
            "libllama.so", "libllama.so.0", "libmtmd.so", "libmtmd.so.0",
        ]  # fmt: skip
        assert not [n for n in names if n.startswith(("lib/", "include/", "bin/"))]
        assert "llama_cpp/__init__.py" in names
        # RECORD lists every file with its real hash and size, and itself without either.
        rows = list(csv.reader(io.StringIO(z.read("llama_cpp-0.3.36.dist-info/RECORD").decode())))
        assert {r[0] for r in rows} == names
        for name, digest, size in rows:
            if name.endswith("RECORD"):
                assert (digest, size) == ("", "")
                continue
            data = z.read(name)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            assert digest == f"sha256={expected.decode()}" and int(size) == len(data)
