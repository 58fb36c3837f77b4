"""Input-token estimates for callers that have no token count.

With tiktoken installed and the encoding's file already on this machine
(tiktoken's cache, `TIKTOKEN_CACHE_DIR`), text is counted with the model's
encoding. Nothing is ever downloaded at run time: a remote read refused
while loading means the encoding is not available offline, and the
estimate falls back to the characters-per-token rule: one token per
`CHARS_PER_TOKEN` (4) characters, rounded up, which is the providers' own
rule of thumb for English text. Chat messages add `MESSAGE_OVERHEAD_TOKENS`
each for their role and separators.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator, Mapping
from typing import Any

logger = logging.getLogger(__name__)

# Characters per token of the fallback rule (providers quote ~4 for English).
CHARS_PER_TOKEN = 4

# Tokens a chat message costs beyond its text: role and separators.
MESSAGE_OVERHEAD_TOKENS = 4

# The encoding of current OpenAI models, used for models tiktoken does not
# know (Anthropic's among them: a close estimate, not their tokenizer).
DEFAULT_ENCODING = "o200k_base"

# Keys whose string values are text the model reads; others (ids, roles,
# image data, cache-control flags) are not counted.
_TEXT_KEYS = frozenset(
    {"content", "text", "input", "instructions", "system", "arguments", "output"}
)


class _RemoteReadRefusedError(OSError):
    """Raised inside tiktoken when it would download an encoding file."""


# Held while tiktoken's file reader is swapped: the swap is process-wide.
_LOAD_LOCK = threading.Lock()


def _refuse_remote_read(blobpath: str) -> bytes:
    raise _RemoteReadRefusedError(
        f"Not downloading {blobpath!r}: encodings must be available offline."
    )


def texts(content: object) -> Iterator[str]:
    """Yield the text in a string, chat messages or Responses input items."""
    if isinstance(content, str):
        yield content
    elif isinstance(content, Mapping):
        for key, value in content.items():
            if key in _TEXT_KEYS:
                yield from texts(value)
    elif isinstance(content, list | tuple):
        for item in content:
            yield from texts(item)
    elif content is not None and not isinstance(content, bytes | int | float):
        # An SDK param object (pydantic model): read it as its JSON.
        dump = getattr(content, "model_dump", None)
        if callable(dump):
            yield from texts(dump())


def _messages(content: object) -> int:
    if isinstance(content, list | tuple):
        return sum(isinstance(item, Mapping) and "role" in item for item in content)
    return 0


class TokenEstimator:
    """Counts input tokens with tiktoken when it can, else by characters.

    Args:
        encoding: tiktoken encoding to use for every model; by default the
            model's own (`tiktoken.encoding_name_for_model`), or
            `DEFAULT_ENCODING` for a model tiktoken does not know.
        chars_per_token: Characters per token of the fallback rule.
    """

    def __init__(
        self, *, encoding: str | None = None, chars_per_token: int = CHARS_PER_TOKEN
    ) -> None:
        if chars_per_token < 1:
            raise ValueError(
                f"chars_per_token must be 1 or more, got {chars_per_token!r}."
            )
        self._encoding = encoding
        self._chars_per_token = chars_per_token
        self._lock = threading.Lock()
        self._loaded: dict[str, Any] = {}

    def method(self, model: str = "") -> str:
        """Say how text for model is counted, e.g. 'tiktoken:o200k_base'."""
        name = self._encoding_name(model)
        if name and self._load(name) is not None:
            return f"tiktoken:{name}"
        return f"chars/{self._chars_per_token}"

    def count(self, content: object, *, model: str = "") -> int:
        """Estimate the input tokens of content sent to model.

        Args:
            content: A string, a list of chat messages (dicts with `role`
                and `content`, text parts included), Responses API input
                items, or an Anthropic `system` value.
            model: The model the text goes to; picks tiktoken's encoding.

        Returns:
            The estimate, 0 for no text.
        """
        encoding = self._load(self._encoding_name(model))
        total = _messages(content) * MESSAGE_OVERHEAD_TOKENS
        for text in texts(content):
            if encoding is not None:
                total += len(encoding.encode(text, disallowed_special=()))
            else:
                total += math.ceil(len(text) / self._chars_per_token)
        return total

    def _encoding_name(self, model: str) -> str:
        if self._encoding is not None:
            return self._encoding
        try:
            import tiktoken
        except ImportError:
            return ""
        try:
            name: str = tiktoken.encoding_name_for_model(model)
        except KeyError:
            return DEFAULT_ENCODING
        return name

    def _load(self, name: str) -> Any:
        """Return tiktoken's encoding name if it loads offline, else None."""
        if not name:
            return None
        with self._lock:
            if name not in self._loaded:
                self._loaded[name] = _load_offline(name)
            return self._loaded[name]


def _load_offline(name: str) -> Any:
    try:
        import tiktoken
        import tiktoken.load
    except ImportError:
        return None

    # tiktoken downloads a missing encoding file on first use; its reads go
    # through tiktoken.load.read_file, swapped for one that refuses remote
    # paths while loading, so only a cached or local file can be used.
    original = tiktoken.load.read_file

    def local_only(blobpath: str) -> bytes:
        if "://" in blobpath:
            return _refuse_remote_read(blobpath)
        return original(blobpath)

    try:
        with _LOAD_LOCK:
            tiktoken.load.read_file = local_only
            try:
                encoding = tiktoken.get_encoding(name)
            finally:
                tiktoken.load.read_file = original
    except (_RemoteReadRefusedError, ValueError, OSError) as exc:
        logger.info(
            "tiktoken encoding not available offline; counting characters "
            "encoding=%s reason=%s",
            name,
            exc,
            extra={"encoding": name},
        )
        return None
    return encoding


# The estimator estimate_tokens uses: each model's encoding, else characters.
_DEFAULT_ESTIMATOR = TokenEstimator()


def estimate_tokens(content: object, *, model: str = "") -> int:
    """Estimate input tokens of text or chat messages, without a network.

    Uses tiktoken when it is installed and the model's encoding is on this
    machine, else one token per `CHARS_PER_TOKEN` characters (rounded up);
    each chat message adds `MESSAGE_OVERHEAD_TOKENS`. See `TokenEstimator`
    to choose the encoding or the rule.
    """
    return _DEFAULT_ESTIMATOR.count(content, model=model)
