"""An OpenAI chat call wrapped in a reservation: the whole integration.

Run a daemon (`tokenpool serve --config tokenpool.toml`), set OPENAI_API_KEY,
then `python openai_chat.py`.
"""

from openai import OpenAI
from tokenpool_client import Client, metered

llm, pool = OpenAI(), Client("127.0.0.1:50051")
chat = metered(pool, llm.chat.completions.create, budget="default", tenant="search-svc")
answer = chat(
    model="gpt-4o-mini",
    messages=[{"role": "user", "content": "Summarise our Q3 notes."}],
    max_tokens=300,
)
print(answer.choices[0].message.content)
