"""The official `openai` Python client against a live `pigpu serve` (run by tests/it/serve.rs).

Usage: python openai_client.py BASE_URL API_KEY RUN_TEXT
RUN_TEXT is `pigpu run`'s greedy completion of PROMPT with 12 tokens, which the server's greedy
answer must equal. Every check raises on failure; the last line printed is `openai-client: ok`.
"""

import sys

import openai

base, key, run_text = sys.argv[1], sys.argv[2], sys.argv[3]
PROMPT = "The capital of France is"
client = openai.OpenAI(base_url=base, api_key=key, max_retries=0, timeout=120)

models = client.models.list()
ids = [m.id for m in models.data]
assert ids == ["SmolLM2-135M-Instruct.Q4_1"], ids
model = ids[0]

# Completion, greedy: equals `pigpu run`.
c = client.completions.create(model=model, prompt=PROMPT, max_tokens=12, temperature=0)
assert c.choices[0].text == run_text, (c.choices[0].text, run_text)
assert c.usage.completion_tokens == 12 and c.choices[0].finish_reason == "length", c
assert c.usage.prompt_tokens > 0 and c.usage.total_tokens == c.usage.prompt_tokens + 12, c.usage

# The same streamed: the pieces join to the same text.
parts, finish = [], None
for ch in client.completions.create(model=model, prompt=PROMPT, max_tokens=12, temperature=0, stream=True):
    parts.append(ch.choices[0].text)
    finish = ch.choices[0].finish_reason or finish
assert "".join(parts) == run_text and finish == "length", (parts, finish)

# Chat, not streamed and streamed (with usage), greedy: the same answer.
msgs = [{"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "What is the capital of France?"}]
r = client.chat.completions.create(model=model, messages=msgs, max_tokens=24, temperature=0)
answer = r.choices[0].message.content
assert r.choices[0].message.role == "assistant" and answer, r
assert r.choices[0].finish_reason in ("stop", "length"), r
usage, deltas = None, []
for ch in client.chat.completions.create(model=model, messages=msgs, max_tokens=24, temperature=0,
                                         stream=True, stream_options={"include_usage": True}):
    if ch.choices:
        deltas.append(ch.choices[0].delta.content or "")
    if ch.usage:
        usage = ch.usage
assert "".join(deltas) == answer, (deltas, answer)
assert usage is not None and usage.completion_tokens == r.usage.completion_tokens, (usage, r.usage)

# max_tokens is honoured.
r = client.chat.completions.create(model=model, messages=msgs, max_tokens=3, temperature=0)
assert r.usage.completion_tokens == 3 and r.choices[0].finish_reason == "length", r

# Stop strings: the text ends before the first stop, which is not included.
full = client.completions.create(model=model, prompt="1, 2, 3, 4,", max_tokens=16, temperature=0).choices[0].text
stop = full.strip().split(" ")[2] if len(full.strip().split(" ")) > 2 else full.strip()[-1]
cut = client.completions.create(model=model, prompt="1, 2, 3, 4,", max_tokens=16, temperature=0, stop=[stop])
assert cut.choices[0].finish_reason == "stop", cut
assert cut.choices[0].text == full[: full.index(stop)], (cut.choices[0].text, full, stop)
parts = [ch.choices[0].text for ch in client.completions.create(
    model=model, prompt="1, 2, 3, 4,", max_tokens=16, temperature=0, stop=[stop], stream=True)]
assert "".join(parts) == cut.choices[0].text, (parts, cut.choices[0].text)

# Seeds: the same seed at temperature 1 gives the same text; several seeds do not all agree.
def sample(seed):
    return client.chat.completions.create(model=model, messages=msgs, max_tokens=16, temperature=1.0,
                                          top_p=1.0, seed=seed,
                                          extra_body={"top_k": 0, "min_p": 0.0}).choices[0].message.content
a, b = sample(1234), sample(1234)
assert a == b, (a, b)
others = {sample(s) for s in (1, 2, 3, 4)}
assert len(others | {a}) > 1, others

# Bad input: the client raises the API's error, and the server keeps serving.
try:
    client.chat.completions.create(model=model, messages=msgs, max_tokens=-1)
    raise AssertionError("max_tokens -1 was accepted")
except openai.BadRequestError as e:
    assert "max_tokens" in str(e), e
try:
    client.chat.completions.create(model=model, messages=msgs, n=2)
    raise AssertionError("n=2 was accepted")
except openai.BadRequestError as e:
    assert "n = 1" in str(e), e
bad = openai.OpenAI(base_url=base, api_key="wrong", max_retries=0)
try:
    bad.models.list()
    raise AssertionError("a wrong key was accepted")
except openai.AuthenticationError:
    pass
assert client.completions.create(model=model, prompt=PROMPT, max_tokens=12, temperature=0).choices[0].text == run_text
print("openai-client: ok")
