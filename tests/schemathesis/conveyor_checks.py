"""Checks of our own that Schemathesis runs beside its built-in ones.

Loaded through SCHEMATHESIS_HOOKS=conveyor_checks by tests/openapi.rs.
"""

import schemathesis

JSON_TYPES = {"object": dict, "array": list}


def top_type(schema, root):
    """The JSON type a schema demands at its top, through references to the
    bundled definitions and `allOf`."""
    for _ in range(16):
        if not isinstance(schema, dict) or "$ref" not in schema:
            break
        schema = root.get("x-bundled", {}).get(schema["$ref"].rsplit("/", 1)[-1], {})
    if not isinstance(schema, dict):
        return None
    if "type" in schema:
        return schema["type"]
    for part in schema.get("allOf", []):
        found = top_type(part, root)
        if found:
            return found
    return None


def has_a_body(case):
    return len(list(case.operation.body)) > 0


def declared_body_type(case):
    """The Python type the operation's request body must have, if it has one."""
    for body in case.operation.body:
        schema = body.definition.get("schema", {})
        return JSON_TYPES.get(top_type(schema, schema))
    return None


def body_of_the_right_type(case):
    """Whether the request sent a non-empty JSON body of the declared type, so
    a refusal is about something inside it and must name that."""
    expected = declared_body_type(case)
    body = getattr(case, "body", None)
    return expected is not None and isinstance(body, expected) and len(body) > 0


@schemathesis.check
def errors_are_json_naming_the_field(ctx, response, case):
    """Every 4xx is JSON {"error": text, "field": name or null}. A 400 names
    the field at fault when the request was well-formed as a whole: a body of
    the declared type, or a path or query parameter."""
    if not 400 <= response.status_code < 500:
        return None
    try:
        body = response.json()
    except Exception as error:  # noqa: BLE001 - any parse failure is the finding
        raise AssertionError(f"{response.status_code} is not JSON: {error}: {response.text[:200]!r}")
    if not isinstance(body, dict):
        raise AssertionError(f"{response.status_code} body is not an object: {body!r}")
    if not isinstance(body.get("error"), str) or not body["error"]:
        raise AssertionError(f"{response.status_code} without an error text: {body!r}")
    if "field" not in body or not (body["field"] is None or isinstance(body["field"], str)):
        raise AssertionError(f"{response.status_code} without a field (name or null): {body!r}")
    if response.status_code == 400:
        field = body["field"]
        # A key spelled "" in the body is a field too, and the one at fault.
        empty_key_sent = isinstance(getattr(case, "body", None), dict) and "" in case.body
        names_a_field = isinstance(field, str) and (field != "" or empty_key_sent)
        if (body_of_the_right_type(case) or not has_a_body(case)) and not names_a_field:
            raise AssertionError(f"400 without naming the field: {body!r}")
    return None
