"""What the OpenAPI schema says of every operation, added once here rather than on each view: the
answers any request may get before or around its view, the headers that come with them, and how
to authenticate."""

from __future__ import annotations

ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
RETRY_AFTER_HEADER = {"Retry-After": {"description": "seconds to wait before asking again",
                                      "schema": {"type": "integer", "minimum": 0}}}
ANSWERS = {
    "406": "the client accepts no JSON (an `Accept` header without application/json or */*)",
    "503": "the database does not answer, or (storing photos) the disk is full: ask again after "
           "`Retry-After` seconds",
}
WITH_A_BODY = {"413": "the request body is larger than the most taken at once"}
SCHEMES = {
    "tokenAuth": "`Authorization: Token <key>`, the key from POST /api/auth/token/ or sign-up.",
    "cookieAuth": "The website's session cookie. Writes (POST, PUT, PATCH, DELETE) also need the "
                  "`X-CSRFToken` header with the value of the `csrftoken` cookie, else a 403 with the code "
                  "`csrf_failed`.",
}


def document_every_operation(result: dict, generator, request, public) -> dict:
    """drf-spectacular's post-processing hook (settings.SPECTACULAR_SETTINGS)."""
    for operations in result["paths"].values():
        for operation in operations.values():
            responses = operation["responses"]
            a_file = any(not kind.startswith("application/json") for code, response in responses.items()
                         if code.startswith("2") for kind in response.get("content", {}))
            answers = {**ANSWERS, **(WITH_A_BODY if "requestBody" in operation else {})}
            for code, description in answers.items():
                if not (a_file and code == "406"):  # a file is answered whatever the client accepts
                    responses.setdefault(code, {"content": ERROR, "description": description})
            for code in ("429", "503"):
                if code in responses:
                    responses[code].setdefault("headers", {}).update(RETRY_AFTER_HEADER)
    for name, scheme in result.get("components", {}).get("securitySchemes", {}).items():
        if name in SCHEMES:
            scheme["description"] = SCHEMES[name]
    return result
