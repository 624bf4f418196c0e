"""Regenerate the committed protobuf and grpclib stubs from the .proto sources in ``proto/``.

``make proto`` runs ``python -m pysentry.proto.generate``. The steps:

1. ``grpc_tools.protoc`` with ``--python_out``, ``--pyi_out`` and grpclib's
   ``protoc-gen-grpclib_python`` plugin (shipped next to the interpreter by grpclib).
2. The generated modules import ``dapr.proto.common.v1...``, which is the Dapr SDK's package.
   Those Python imports are rewritten to ``pysentry.proto.dapr.proto...``. The registered .proto
   file names and the protobuf package names stay exactly Dapr's, so method paths and the wire
   format do not change (the descriptor pool still holds ``dapr/proto/...``: never import the Dapr
   SDK in the same process).
3. ``*_grpc.py`` files of .proto files without a service are dropped, and empty ``__init__.py``
   files are added so every directory is a package.

``generate(dest)`` writes into any directory; a test regenerates into a temp dir and compares.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

PACKAGE = "pysentry.proto"
REPO_ROOT = Path(__file__).resolve().parents[3]
PROTO_ROOT = REPO_ROOT / "proto"
OUTPUT_ROOT = Path(__file__).resolve().parent

# A Python module reference to a generated Dapr module: not part of a path ("dapr/proto"),
# not a fully qualified protobuf type name (".dapr.proto.x.v1.Msg"), not inside another name.
_MODULE_REF = re.compile(r"(?<![./\w])dapr\.proto\.(?=\w+\.v1(?:\.\w+_pb2\b| import ))")


def proto_files(root: Path = PROTO_ROOT) -> list[str]:
    """The .proto sources, relative to ``root``, sorted."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.proto"))


def _plugin_path() -> Path:
    candidates = [Path(sys.executable).parent / "protoc-gen-grpclib_python"]
    found = shutil.which("protoc-gen-grpclib_python")
    if found:
        candidates.append(Path(found))
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise RuntimeError(
        "protoc-gen-grpclib_python not found: install grpclib in the interpreter's environment"
    )


def _run_protoc(src: Path, out: Path) -> None:
    import grpc_tools  # type: ignore[import-untyped]  # dev dependency, only when generating
    from grpc_tools import protoc

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{src}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--plugin=protoc-gen-grpclib_python={_plugin_path()}",
        f"--grpclib_python_out={out}",
        *proto_files(src),
    ]
    code = protoc.main(args)
    if code != 0:
        raise RuntimeError(f"protoc failed with exit code {code}")


def rewrite_imports(text: str) -> str:
    """Point generated imports at ``pysentry.proto.dapr.proto...`` instead of the SDK's package."""
    return _MODULE_REF.sub(f"{PACKAGE}.dapr.proto.", text)


def _has_service(proto: Path) -> bool:
    return re.search(r"^\s*service\s+\w+", proto.read_text(), re.MULTILINE) is not None


def generate(dest: Path, src: Path = PROTO_ROOT) -> list[Path]:
    """Generate the stubs for every .proto under ``src`` into ``dest``; return the files written."""
    with tempfile.TemporaryDirectory(prefix="pysentry-proto-") as tmp:
        raw = Path(tmp)
        _run_protoc(src, raw)
        for name in proto_files(src):
            if not _has_service(src / name):
                (raw / name).with_name(Path(name).stem + "_grpc.py").unlink(missing_ok=True)
        target = dest / "dapr"
        if target.exists():
            shutil.rmtree(target)
        written: list[Path] = []
        for path in sorted(raw.rglob("*")):
            if not path.is_file():
                continue
            out = dest / path.relative_to(raw)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(rewrite_imports(path.read_text()))
            written.append(out)
    for directory in sorted({p.parent for p in written}):
        while directory != dest:
            init = directory / "__init__.py"
            if not init.exists():
                init.write_text("")
                written.append(init)
            directory = directory.parent
    return sorted(written)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=OUTPUT_ROOT, help="output directory")
    parser.add_argument("--proto", type=Path, default=PROTO_ROOT, help=".proto source root")
    ns = parser.parse_args(argv)
    files = generate(ns.out, ns.proto)
    sys.stdout.write(f"generated {len(files)} files into {ns.out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
