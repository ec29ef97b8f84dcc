"""A bounded LRU of answers, keyed by the image's bytes and the question asked.

Same bytes, same question, same mode: the model is deterministic (greedy), so the answer is
the same; serving it from memory is exact, not an approximation.
"""

import hashlib
from collections import OrderedDict
from typing import Generic, TypeVar

Value = TypeVar("Value")


def cache_key(data: bytes, question: str, explain: bool) -> str:
    digest = hashlib.sha256(data).hexdigest()
    return f"{digest}:{explain:d}:{question}"


class LRUCache(Generic[Value]):
    def __init__(self, max_entries: int):
        self.max_entries = max_entries
        self._entries: OrderedDict[str, Value] = OrderedDict()

    def get(self, key: str) -> Value | None:
        if key not in self._entries:
            return None
        self._entries.move_to_end(key)
        return self._entries[key]

    def put(self, key: str, value: Value) -> None:
        if self.max_entries <= 0:
            return
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
