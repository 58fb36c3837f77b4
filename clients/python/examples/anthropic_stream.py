"""A streamed Anthropic call metered inside a reservation, on asyncio.

`scope.meter(stream)` counts usage as the events arrive. If the stream is
cut off (a dropped connection, a `break`), the settle is marked incomplete
and the daemon charges the larger of what was measured and the hold.
"""

import asyncio

from anthropic import AsyncAnthropic
from tokenpool_client import AsyncClient, RefusedError, estimate_tokens

MESSAGES = [{"role": "user", "content": "Write a haiku about rate limits."}]


async def main() -> None:
    """Reserve, stream the answer, settle what it used."""
    llm = AsyncAnthropic()
    async with AsyncClient("127.0.0.1:50051") as pool:
        estimate = estimate_tokens(MESSAGES, model="claude-sonnet-4-5")
        try:
            async with pool.reservation(
                "default", "poetry-svc", input_tokens=estimate, max_output_tokens=200
            ) as scope:
                stream = await llm.messages.create(
                    model="claude-sonnet-4-5",
                    max_tokens=200,
                    messages=MESSAGES,  # type: ignore[arg-type]
                    stream=True,
                )
                async for event in scope.meter(stream):
                    if event.type == "content_block_delta" and event.delta.type == (
                        "text_delta"
                    ):
                        print(event.delta.text, end="", flush=True)
            print("\nusage to settle:", scope.usage)
        except RefusedError as refused:
            print(f"No tokens now ({refused.reason}); retry {refused.retry_after_s}s")


if __name__ == "__main__":
    asyncio.run(main())
