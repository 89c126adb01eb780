"""GraphiQL, served from the package: no third-party CDN.

strawberry's GraphiQL page loads React, GraphiQL and its explorer plugin
from unpkg.com. A page into which users paste bearer tokens should not
depend on another party's servers, and a regulator's network may reach no
CDN at all, so the same files (the exact versions strawberry pins; from the
npm registry, licences beside them) live in schema/static/graphiql/ and the
page points at them. The page keeps strawberry's Subresource Integrity
hashes (W3C SRI), and tests/test_graphiql.py checks that each served file
still matches its hash.
"""

from __future__ import annotations

from pathlib import Path

from strawberry.http.ides import get_graphql_ide_html

STATIC_DIR = Path(__file__).resolve().parent / "static" / "graphiql"
STATIC_PATH = "/static/graphiql"

# unpkg URL in strawberry's page -> the file in STATIC_DIR
ASSETS = {
    "https://unpkg.com/react@18.2.0/umd/react.production.min.js": "react.production.min.js",
    "https://unpkg.com/react-dom@18.2.0/umd/react-dom.production.min.js": "react-dom.production.min.js",
    "https://unpkg.com/js-cookie@3.0.5/dist/js.cookie.min.js": "js.cookie.min.js",
    "https://unpkg.com/graphiql@3.8.3/graphiql.min.css": "graphiql.min.css",
    "https://unpkg.com/graphiql@3.8.3/graphiql.min.js": "graphiql.min.js",
    "https://unpkg.com/@graphiql/plugin-explorer@1.0.2/dist/style.css": "plugin-explorer.css",
    "https://unpkg.com/@graphiql/plugin-explorer@1.0.2/dist/index.umd.js": "plugin-explorer.umd.js",
}


def graphiql_html() -> str:
    """strawberry's GraphiQL page with every asset served from :data:`STATIC_PATH`."""
    html = get_graphql_ide_html("graphiql")
    for url, name in ASSETS.items():
        if url not in html:
            raise RuntimeError(
                f"strawberry's GraphiQL page no longer loads {url}: update schema/graphiql.py "
                "and schema/static/graphiql/ to the versions it pins now"
            )
        html = html.replace(url, f"{STATIC_PATH}/{name}")
    return html.replace(
        "<title>Strawberry GraphiQL</title>", "<title>Recovery Ledger · GraphiQL</title>"
    )
