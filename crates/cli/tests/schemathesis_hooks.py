"""Schemathesis hooks for imagelake's OpenAPI test (crates/cli/tests/openapi.rs).

The lake's door takes NDJSON (application/x-ndjson), which schemathesis cannot serialise by
itself: a generated string is sent as its UTF-8 bytes, anything else as one JSON value per line.
"""
import json

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, bytes):
        return value
    lines = value if isinstance(value, list) else [value]
    return "\n".join(json.dumps(line) for line in lines).encode()
