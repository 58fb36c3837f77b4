"""Retries, and a safe local allowance for when the daemon is down.

Calls answered UNAVAILABLE are retried with backoff, each retry carrying the
same idempotency key. If the daemon still cannot be reached, this client
grants from a local token bucket of 20,000 tokens a minute instead of
failing, and counts what it did.
"""

import logging

from openai import OpenAI
from tokenpool_client import Client, LocalAllowance, RetryPolicy, metered

logging.basicConfig(level=logging.INFO)

pool = Client(
    "127.0.0.1:50051",
    retry=RetryPolicy(attempts=5, initial_backoff_s=0.2, max_elapsed_s=5),
    when_unreachable=LocalAllowance(tokens_per_minute=20_000),
)
ask = metered(pool, OpenAI().responses.create, budget="default", tenant="batch-svc")

response = ask(model="gpt-4.1-mini", input="One sentence on token budgets.")
print(response.output_text)
print(pool.counters())
