"""PII pseudonyms through Sluice with the official openai SDK: the provider sees <EMAIL_1>,
the client gets the original back, also when the stream splits a pseudonym across chunks.

Env: SLUICE_BASE_URL (gateway /v1). Exits non-zero on the first failed check."""
import os
import sys

import openai

EMAIL = "jane.doe@example.com"
PROMPT = f"Please write to {EMAIL} and cc ops@example.org, then {EMAIL} again."


def main() -> int:
    client = openai.OpenAI(base_url=os.environ["SLUICE_BASE_URL"], api_key="sk-any", max_retries=0, timeout=10)
    reply = client.chat.completions.create(model="pii-json", messages=[{"role": "user", "content": PROMPT}])
    text = reply.choices[0].message.content
    assert text == "echo: " + PROMPT, f"json: {text!r}"
    print("ok json restore")

    stream = client.chat.completions.create(
        model="pii-stream", stream=True, messages=[{"role": "user", "content": PROMPT}]
    )
    parts = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
    text = "".join(parts)
    assert text == "echo: " + PROMPT, f"stream: {text!r}"
    assert "<EMAIL_" not in text
    print("ok stream restore")
    print("pii SDK checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
