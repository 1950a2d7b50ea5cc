"""Regenerate the protobuf modules of this package from its ``.proto`` files.

Run ``python -m k8s_sql.proto.generate`` after editing a ``.proto`` file (it needs
``grpcio-tools``, a test dependency).  ``tests/test_proto.py`` fails while the
committed modules do not match the sources.
"""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
SOURCE_ROOT = PACKAGE_DIR.parent.parent
PROTO_FILES = ("kv.proto", "auth.proto", "rpc.proto", "health.proto", "dump.proto", "lease.proto")


def proto_paths() -> list[str]:
    """The ``.proto`` files, as paths relative to the source root."""
    return [str(PACKAGE_DIR.relative_to(SOURCE_ROOT) / name) for name in PROTO_FILES]


def protoc(*arguments: str) -> None:
    """Run ``protoc`` from grpcio-tools with the source root on the import path."""
    from grpc_tools import protoc as grpc_protoc  # type: ignore[import-untyped]

    status = grpc_protoc.main(["protoc", f"-I{SOURCE_ROOT}", *arguments, *proto_paths()])
    if status != 0:
        raise SystemExit(f"protoc failed with status {status}")


def main() -> None:
    """Write ``*_pb2.py`` and ``*_pb2.pyi`` next to the sources."""
    protoc(f"--python_out={SOURCE_ROOT}", f"--pyi_out={SOURCE_ROOT}")
    print("regenerated", ", ".join(proto_paths()), file=sys.stderr)


if __name__ == "__main__":
    main()
