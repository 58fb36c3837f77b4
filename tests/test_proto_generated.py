"""Tests that the committed gRPC modules match the proto file."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path("scripts/gen_proto.py")
GENERATED = Path("clients/python/tokenpool_client/v1")
PROTO = Path("proto/tokenpool/v1/tokenpool.proto")


def _check(root: Path) -> subprocess.CompletedProcess[str]:
    """Run `gen_proto.py --check` against the tree under root."""
    return subprocess.run(
        [sys.executable, str(root / SCRIPT), "--check", "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_committed_generated_code_is_up_to_date() -> None:
    result = _check(ROOT)

    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("old", "new", "stale"),
    [
        pytest.param(
            "  int64 requested_tokens = 5;\n",
            "  int64 requested_tokens = 5;\n  int64 extra_tokens = 6;\n",
            ["tokenpool_pb2.py", "tokenpool_pb2.pyi"],
            id="field-added",
        ),
        pytest.param(
            "// Holds tokens for one API call",
            "// Reserves tokens for one API call",
            ["tokenpool_pb2_grpc.py"],
            id="rpc-comment-changed",
        ),
    ],
)
def test_check_after_proto_edit_reports_stale_files(
    tmp_path: Path, old: str, new: str, stale: list[str]
) -> None:
    shutil.copytree(ROOT / "proto", tmp_path / "proto")
    shutil.copytree(ROOT / GENERATED, tmp_path / GENERATED)
    (tmp_path / SCRIPT).parent.mkdir()
    shutil.copy(ROOT / SCRIPT, tmp_path / SCRIPT)
    assert _check(tmp_path).returncode == 0

    proto = tmp_path / PROTO
    text = proto.read_text(encoding="utf-8")
    assert text.count(old) == 1
    proto.write_text(text.replace(old, new), encoding="utf-8")
    result = _check(tmp_path)

    assert result.returncode == 1
    assert "make proto" in result.stderr
    reported = re.findall(rf"{GENERATED.as_posix()}/(\w+\.pyi?)\b", result.stderr)
    assert sorted(reported) == stale
