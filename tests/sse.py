"""Reading server-sent events as a client does: (name, JSON data, seconds since the request)."""

import json
import time


def events(lines, started: float | None = None):
    """Yields each event of an SSE body as it arrives; comments (pings) are skipped."""
    started = time.perf_counter() if started is None else started
    name, data = "message", []
    for line in lines:
        line = line.rstrip("\r")
        if not line:
            if data:
                yield name, json.loads("\n".join(data)), time.perf_counter() - started
            name, data = "message", []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())
