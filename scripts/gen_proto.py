"""Generator of the Python client's gRPC modules from the tokenpool proto.

`python scripts/gen_proto.py` (what `make proto` runs) rewrites the generated
modules under clients/python/tokenpool_client/v1/; `--check` generates into a
temporary directory instead and exits 1 when the committed modules differ.
"""

from __future__ import annotations

import argparse
import importlib.resources
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from grpc_tools import protoc

# The proto file, relative to the proto/ include directory.
PROTO_FILE = "tokenpool/v1/tokenpool.proto"

# Where the generated modules are committed, relative to the repository root.
OUTPUT_DIR = "clients/python/tokenpool_client/v1"

# protoc names the generated modules after the proto path, i.e. as the package
# tokenpool.v1. That is the daemon's package, so the code must live in
# tokenpool_client.v1 instead: each (file, old, new) text must occur exactly
# once, so that a change in protoc's output fails loudly instead of slipping by.
_REWRITES = (
    (
        "tokenpool_pb2_grpc.py",
        "from tokenpool.v1 import tokenpool_pb2 as",
        "from . import tokenpool_pb2 as",
    ),
    (
        "tokenpool_pb2.py",
        "'tokenpool.v1.tokenpool_pb2'",
        "'tokenpool_client.v1.tokenpool_pb2'",
    ),
)

# The modules protoc writes for PROTO_FILE, in a fixed order for messages.
GENERATED_NAMES = ("tokenpool_pb2.py", "tokenpool_pb2.pyi", "tokenpool_pb2_grpc.py")


class GenerationError(Exception):
    """Raised when protoc fails or its output is not what this script expects."""


def _default_root() -> Path:
    return Path(__file__).resolve().parent.parent


def _run_protoc(proto_dir: Path, out_dir: Path) -> None:
    """Run grpc_tools' protoc on PROTO_FILE, writing into out_dir."""
    with importlib.resources.as_file(
        importlib.resources.files("grpc_tools") / "_proto"
    ) as well_known_dir:
        status = protoc.main(
            [
                "grpc_tools.protoc",
                f"--proto_path={proto_dir}",
                f"--proto_path={well_known_dir}",
                f"--python_out={out_dir}",
                f"--pyi_out={out_dir}",
                f"--grpc_python_out={out_dir}",
                str(proto_dir / PROTO_FILE),
            ]
        )

    if status != 0:
        raise GenerationError(
            f"protoc failed on {proto_dir / PROTO_FILE} (exit status {status}); "
            "fix the errors it printed above and run this script again."
        )


def _apply_rewrites(name: str, text: str) -> str:
    for target, old, new in _REWRITES:
        if target != name:
            continue
        count = text.count(old)
        if count != 1:
            raise GenerationError(
                f"Expected {old!r} exactly once in the generated {name}, found it "
                f"{count} times; update _REWRITES in scripts/gen_proto.py to "
                "match this protoc version."
            )
        text = text.replace(old, new)
    return text


def generate(root: Path) -> dict[str, str]:
    """Generate the modules for the proto under root.

    Args:
        root: Repository root holding proto/.

    Returns:
        The text of each generated module, by file name.

    Raises:
        GenerationError: protoc failed or wrote something unexpected.
    """
    proto_dir = root / "proto"
    with tempfile.TemporaryDirectory(prefix="gen_proto_") as tmp:
        out_dir = Path(tmp)
        _run_protoc(proto_dir, out_dir)

        generated_dir = out_dir / Path(PROTO_FILE).parent
        modules = {}
        for name in GENERATED_NAMES:
            text = (generated_dir / name).read_text(encoding="utf-8")
            modules[name] = _apply_rewrites(name, text)
    return modules


def stale_files(root: Path, modules: dict[str, str]) -> list[str]:
    """List committed modules that are missing or differ from modules."""
    stale = []
    for name, text in modules.items():
        path = root / OUTPUT_DIR / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(f"{OUTPUT_DIR}/{name}")
    return stale


def write(root: Path, modules: dict[str, str]) -> list[str]:
    """Write modules into the output directory; return the files changed."""
    output_dir = root / OUTPUT_DIR
    output_dir.mkdir(parents=True, exist_ok=True)

    changed = stale_files(root, modules)
    for name, text in modules.items():
        if f"{OUTPUT_DIR}/{name}" in changed:
            with open(output_dir / name, "w", encoding="utf-8", newline="\n") as f:
                f.write(text)
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    """Generate or check the client's gRPC modules; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="generate into a temporary directory and exit 1 if the committed "
        "modules are stale, writing nothing",
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=_default_root(),
        help="repository root holding proto/ and clients/ (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    root = args.root.resolve()

    try:
        modules = generate(root)
    except GenerationError as exc:
        print(exc, file=sys.stderr)
        return 2

    if args.check:
        stale = stale_files(root, modules)
        if stale:
            print(
                "Generated gRPC code is stale: "
                + ", ".join(stale)
                + ". Run `make proto` and commit the result.",
                file=sys.stderr,
            )
            return 1
        print("Generated gRPC code is up to date.")
        return 0

    changed = write(root, modules)
    for path in changed:
        print(f"Wrote {path}")
    if not changed:
        print("Generated gRPC code was already up to date.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
