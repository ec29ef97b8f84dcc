"""The served prompt as one OpenAI chat completion, for the peers that speak that API (llama-server, vLLM)."""

import base64
import time

import httpx

from healer.text.prompts import DEFAULT_QUESTION, SYSTEM_PROMPT

EXPLAINED_TOKENS = 48  # Healer's MAX_NEW_TOKENS: random weights never stop earlier


def ask(url: str, image: bytes, explain: bool, **extra) -> tuple[float, dict]:
    """(seconds, the response's JSON) for one answer to the served prompt: EXPLAINED_TOKENS tokens
    (as Healer's random-weight answers run to MAX_NEW_TOKENS) or one token, greedy, end of turn ignored."""
    png = base64.b64encode(image).decode()
    body = {
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
                {"type": "text", "text": DEFAULT_QUESTION},
            ]},
        ],
        "max_tokens": EXPLAINED_TOKENS if explain else 1, "ignore_eos": True, "temperature": 0, **extra,
    }
    started = time.perf_counter()
    response = httpx.post(url + "/v1/chat/completions", json=body, timeout=3600)
    response.raise_for_status()
    return time.perf_counter() - started, response.json()
