"""Input-token estimates: tiktoken from files on this machine, else characters."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest
import requests
import tiktoken
import tiktoken.load
import tiktoken.registry
from tokenpool_client import TokenEstimator, estimate_tokens

# Where the test encoding would be downloaded from, were downloads allowed.
_URL = "https://encodings.invalid/tokenpool-test.tiktoken"


def _ranks() -> dict[bytes, int]:
    """Every byte, then a few merges: 'hello' and ' world' are one token each."""
    ranks = {bytes([b]): b for b in range(256)}
    merges = (b"he", b"ll", b"hell", b"hello", b" w", b"or", b"ld", b"orld", b" world")
    for token in merges:
        ranks[token] = len(ranks)
    return ranks


def _constructor() -> dict[str, Any]:
    ranks = tiktoken.load.load_tiktoken_bpe(_URL)
    return {
        "name": "tokenpool-test",
        "pat_str": r"""'s|'t| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+""",
        "mergeable_ranks": ranks,
        "special_tokens": {},
    }


@pytest.fixture
def no_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the estimator tried to download an encoding")

    monkeypatch.setattr(requests, "get", refuse)
    # tiktoken keeps loaded encodings process-wide: start each test afresh.
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    tiktoken.list_encoding_names()  # discovers the built-in constructors
    constructors = tiktoken.registry.ENCODING_CONSTRUCTORS
    assert constructors is not None
    monkeypatch.setitem(constructors, "tokenpool-test", _constructor)


def _cache(directory: Path) -> None:
    """Put the test encoding where tiktoken's cache looks for _URL."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = [
        base64.b64encode(token) + b" " + str(rank).encode()
        for token, rank in _ranks().items()
    ]
    name = hashlib.sha1(_URL.encode()).hexdigest()
    (directory / name).write_bytes(b"\n".join(lines) + b"\n")


def test_characters_rule_rounds_up() -> None:
    estimator = TokenEstimator(encoding="tokenpool-missing")

    assert estimator.count("x" * 9) == 3
    assert estimator.count("") == 0
    assert estimator.method() == "chars/4"


def test_chat_messages_add_overhead_per_message() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},  # 9 chars: 3 tokens
        {"role": "user", "content": [{"type": "text", "text": "12345678"}]},  # 2
    ]

    assert estimate_tokens(messages) == 3 + 2 + 2 * 4


def test_tiktoken_encoding_from_local_cache_is_used(
    no_downloads: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "cache"))
    _cache(tmp_path / "cache")
    estimator = TokenEstimator(encoding="tokenpool-test")

    assert estimator.method() == "tiktoken:tokenpool-test"
    assert estimator.count("hello world") == 2
    assert estimator.count("hello worlds") == 3


def test_tiktoken_without_local_file_falls_back_without_download(
    no_downloads: None, caplog: pytest.LogCaptureFixture
) -> None:
    estimator = TokenEstimator(encoding="tokenpool-test")

    assert estimator.count("hello world") == 3  # 11 characters
    assert estimator.method() == "chars/4"
    assert "not available offline" in caplog.text


def test_chars_per_token_below_one_raises_value_error() -> None:
    with pytest.raises(ValueError, match=r"chars_per_token must be 1 or more"):
        TokenEstimator(chars_per_token=0)
