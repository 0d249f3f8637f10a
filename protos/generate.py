"""Regenerates the Python gRPC code from protos/ into services/api/.

protoc writes `from earpiece.v1 import x_pb2` for cross-file imports; the generated package lives
at `services.api.earpiece.v1`, so those imports are rewritten. `--check` regenerates into a
temporary folder and exits non-zero if the committed code differs (the test suite runs it).
"""

from __future__ import annotations

import argparse
import filecmp
import re
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
OUT = ROOT / "services" / "api"
PACKAGE_PREFIX = "services.api."


def generate(out: Path) -> None:
    files = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    bindir = Path(sys.executable).parent
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{include}",
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for path in (out / "earpiece").rglob("*.py*"):
        text = path.read_text()
        text = re.sub(r"^from earpiece\.", f"from {PACKAGE_PREFIX}earpiece.", text, flags=re.M)
        text = re.sub(r"^import earpiece\.", f"import {PACKAGE_PREFIX}earpiece.", text, flags=re.M)
        path.write_text(text)
    for folder in [out / "earpiece", *(p for p in (out / "earpiece").rglob("*") if p.is_dir())]:
        (folder / "__init__.py").touch()


def differences(a: Path, b: Path) -> list[str]:
    cmp = filecmp.dircmp(a, b, ignore=["__pycache__"])
    out = [f"only in one: {n}" for n in cmp.left_only + cmp.right_only]
    out += [f"differs: {n}" for n in cmp.diff_files]
    for name, sub in cmp.subdirs.items():
        out += [f"{name}/{d}" for d in differences(Path(sub.left), Path(sub.right))]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if generated code is stale")
    args = parser.parse_args()
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            generate(Path(tmp))
            diff = differences(Path(tmp) / "earpiece", OUT / "earpiece")
        if diff:
            print("generated code is stale; run `make proto`:\n  " + "\n  ".join(diff))
            return 1
        print("generated code is up to date")
        return 0
    shutil.rmtree(OUT / "earpiece", ignore_errors=True)
    generate(OUT)
    print(f"generated into {OUT.relative_to(ROOT)}/earpiece")
    return 0


if __name__ == "__main__":
    sys.exit(main())
