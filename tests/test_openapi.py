"""GET /openapi.json and /docs (API.md, "Operations")."""

from __future__ import annotations

from typing import Any

from openapi_spec_validator import validate


async def test_openapi_is_a_valid_3_1_document_of_every_route(client: Any) -> None:
    response = await client.get("/openapi.json")
    assert response.status == 200
    spec = await response.json()
    assert spec["openapi"].startswith("3.1")
    validate(spec)

    def bare(path: str) -> str:
        return path.rstrip("/") or "/"

    documented = {(m.upper(), bare(p)) for p, ops in spec["paths"].items() for m in ops}
    registered = set()
    for route in client.app.router.routes():
        path = route.resource.canonical if route.resource else ""
        # Swagger UI's files and its set-up script are the page's assets, not API routes.
        if route.method in ("HEAD", "OPTIONS") or path.startswith(("/docs/static", "/docs/init")):
            continue
        registered.add((route.method, bare(path)))
    missing = registered - documented
    assert not missing, f"routes missing from /openapi.json: {sorted(missing)}"


async def test_spec_carries_bodies_errors_and_security(client: Any) -> None:
    spec = await (await client.get("/openapi.json")).json()
    # Paths as API.md writes them: the feed's with their trailing slash, the rest without.
    assert {"/add-value/", "/events/", "/users", "/events", "/values"} <= set(spec["paths"])
    assert "/add-value" not in spec["paths"] and "/users/" not in spec["paths"]
    create_user = spec["paths"]["/users"]["post"]
    assert create_user["security"] == []
    assert {"400", "409", "413", "415", "422", "201"} <= set(create_user["responses"])
    schema_ref = create_user["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert schema_ref.endswith("/CreateUser")
    props = spec["components"]["schemas"]["CreateUser"]["properties"]
    assert {"name", "email", "password"} <= set(props)
    get_event = spec["paths"]["/events/{event_id}"]["get"]
    assert get_event["security"] == [{"bearer": []}]
    assert {"401", "404", "503"} <= set(get_event["responses"])
    problem = get_event["responses"]["404"]["content"]["application/problem+json"]
    assert problem["schema"]["$ref"].endswith("/Problem")
    assert "bearer" in spec["components"]["securitySchemes"]


async def test_docs_serve_swagger_ui_from_the_service_itself(client: Any) -> None:
    page = await client.get("/docs")
    assert page.status == 200 and page.content_type == "text/html"
    html = await page.text()
    assert "https://" not in html and "http://" not in html
    init = await client.get("/docs/init.js")  # Swagger UI's set-up: a file, for the CSP
    assert init.status == 200 and init.content_type == "text/javascript"
    assert '"/openapi.json"' in await init.text()
    bundle = await client.get("/docs/static/swagger-ui-bundle.js")
    assert bundle.status == 200
    assert len(await bundle.read()) > 100_000


async def test_every_request_body_has_a_real_example(client: Any) -> None:
    """Swagger UI shows the example of each body; without one it makes strings up from the
    patterns (e.g. "^[^\\u0000]*$"). Each example must be a body the route accepts."""
    from server.openapi import endpoint_of

    spec = await (await client.get("/openapi.json")).json()
    bodies = {}
    for route in client.app.router.routes():
        info = endpoint_of(route.handler)
        if info is not None and info.body is not None and route.resource is not None:
            bodies[(route.method.lower(), route.resource.canonical)] = info.body
    checked = 0
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if "requestBody" not in operation:
                continue
            media = operation["requestBody"]["content"]["application/json"]
            example = media.get("example")
            assert isinstance(example, dict) and example, (method, path)
            schema = bodies[(method, path)]()
            assert schema.validate(example) == {}, (method, path, example)
            component = spec["components"]["schemas"][media["schema"]["$ref"].split("/")[-1]]
            for name, prop in component["properties"].items():
                if "pattern" in prop:
                    assert "example" in prop, (method, path, name)
            checked += 1
    assert checked >= 8  # users, login, events, add-value, send-message, mark read


async def test_parameters_and_streams_are_documented_as_the_handlers_read_them(
    client: Any,
) -> None:
    """What schemathesis generates from (tests/test_fuzz.py): a `limit` the document allows is
    one the handler takes, an id is a UUID, and a stream's events are described one by one."""
    spec = await (await client.get("/openapi.json")).json()
    limits = revisions = 0
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                name, schema = parameter["name"], parameter["schema"]
                where = (method, path, name)
                if parameter["in"] == "path":
                    revision = {"type": "integer", "minimum": 1}
                    uuid = {"type": "string", "format": "uuid"}
                    assert schema == (revision if name == "revision" else uuid), where
                    revisions += name == "revision"
                elif name == "limit":
                    assert schema == {"type": "integer", "minimum": 1, "maximum": 200,
                                      "default": 50}, where  # fmt: skip
                    limits += 1
    assert limits >= 11 and revisions == 2  # every list; revision and restore
    diff = {p["name"]: p for p in spec["paths"]["/stories/{story_id}/diff"]["get"]["parameters"]}
    assert diff["from"]["required"] and diff["from"]["schema"]["type"] == "integer"
    unread = spec["paths"]["/notifications/{user_id}"]["get"]["parameters"][1]
    assert unread["name"] == "unread" and unread["schema"]["type"] == "boolean"

    def event(path: str) -> dict[str, Any]:
        content = spec["paths"][path]["get"]["responses"]["200"]["content"]
        return dict(content["text/event-stream"]["schema"])

    feed, user = event("/events/"), event("/sse/{user_id}")
    assert feed["required"] == ["data"] and feed["properties"]["data"] == {"type": "string"}
    payload = user["properties"]["data"]["contentSchema"]["oneOf"]
    assert payload[0] == {"$ref": "#/components/schemas/Notification"}
    assert payload[1]["required"] == ["last_event_id"]

    # Each documented bound is the handler's: 200 is a page, 201 and 0 are 422.
    for limit, status in (("200", 200), ("201", 422), ("0", 422)):
        response = await client.get(f"/values?limit={limit}")
        assert response.status == status, (limit, await response.text())
