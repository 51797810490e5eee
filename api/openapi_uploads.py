"""Upload fields that generated clients can send: FastAPI (OpenAPI 3.1) describes a file as
`{"type": "string", "contentMediaType": "application/octet-stream"}`, which client generators such as
openapi-python-client read as a plain string (their uploads then fail with 422). Adding
`"format": "binary"`, the OpenAPI 3.0 spelling that generators and Swagger UI all know, makes them a
file; the 3.1 keyword stays for the tools that read it."""

from __future__ import annotations

from typing import Any

FILE_MEDIA_TYPE = "application/octet-stream"


def binary_uploads(schema: dict[str, Any]) -> dict[str, Any]:
    """Mark every file field of the multipart request bodies (and their component schemas) as binary."""
    components = schema.get("components", {}).get("schemas", {})
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            content = operation.get("requestBody", {}).get("content", {}).get("multipart/form-data")
            if content is None:
                continue
            body = content["schema"]
            if "$ref" in body:
                body = components[body["$ref"].rsplit("/", 1)[-1]]
            for field in body.get("properties", {}).values():
                for node in (field, field.get("items", {})):
                    if node.get("type") == "string" and node.get("contentMediaType") == FILE_MEDIA_TYPE:
                        node["format"] = "binary"
    return schema
