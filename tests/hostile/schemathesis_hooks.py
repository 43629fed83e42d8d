"""schemathesis hooks for the API fuzzing test: WHEP offers are sent as application/sdp text."""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.serializer("application/sdp")
def sdp(_ctx: Any, value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else str(value).encode()
