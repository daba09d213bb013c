"""`/api/v1`: the JSON API (what the pages do, for scripts), and its OpenAPI document.

Credentials: `Authorization: Bearer TOKEN`, HTTP Basic, or the dashboard's session cookie
(then writes need the `X-CSRF-Token` header). Errors: `{"error": "one line"}`.
`scheduler.web.jsonapi.routes` is the URL map; one module per resource serves it."""
