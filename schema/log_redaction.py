"""Secrets out of the server's logs: query strings and API tokens.

Two leaks this closes (both found by tests/test_secrets_in_logs.py):

* **Query strings.** ``GET /graphql?query=…&variables=…`` is a valid way to run
  a query, and its variables may hold anything — a lot id, a battery code, a
  pasted API token. uvicorn's access log writes the whole path with its query
  string. :class:`QueryStringRedactor` keeps each parameter's name and drops
  its value: ``"GET /graphql?query=…&variables=… HTTP/1.1" 200``.
* **Tokens in exception text.** An internal error is logged with its traceback
  (schema/errors.py), and an exception's message may quote the input that
  caused it — e.g. a variable holding a token. :class:`TokenRedactor` rewrites
  every ``rlt_<id>_<secret>`` in a record's message, arguments and formatted
  traceback to ``rlt_<id>_…`` (the id names the token for `rledger token
  revoke` and is safe to log; ledger/tokens.py).

:func:`install` adds them to the loggers the server writes through; ``create_app``
calls it (idempotent), so it holds in every server process whatever logging
configuration uvicorn was started with.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl

__all__ = ["QueryStringRedactor", "TokenRedactor", "install", "redact_query", "redact_tokens"]

ACCESS_LOGGER = "uvicorn.access"
# Loggers whose records may carry exception text: the API's own and uvicorn's
# "Exception in ASGI application" (records of child loggers skip a parent's filters).
TEXT_LOGGERS = ("rledger", "rledger.api", "rledger.merkle", "uvicorn.error")
HIDDEN = "…"
# A token, also percent-encoded or cut short (any 8+ characters of the secret).
_TOKEN = re.compile(r"(rlt_[a-z2-7]{12}_)[A-Za-z0-9_-]{8,}")


def redact_query(path: str) -> str:
    """``path`` with each query parameter's value replaced by ``…``."""
    base, sep, query = path.partition("?")
    if not sep:
        return path
    names = [name for name, _ in parse_qsl(query, keep_blank_values=True)]
    return f"{base}?" + "&".join(f"{name[:40]}={HIDDEN}" for name in names)


def redact_tokens(text: str) -> str:
    """``text`` with every API token's secret replaced by ``…``."""
    return _TOKEN.sub(lambda m: m.group(1) + HIDDEN, text) if "rlt_" in text else text


class QueryStringRedactor(logging.Filter):
    """Rewrites uvicorn's access records ``(client, method, path, http_version, status)``."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            if "?" in args[2]:
                record.args = (*args[:2], redact_query(args[2]), *args[3:])
        elif "?" in str(record.msg):  # another shape: drop the query strings from the text
            text = record.getMessage()
            record.msg = " ".join(redact_query(w) if "?" in w else w for w in text.split(" "))
            record.args = None
        return True


class TokenRedactor(logging.Filter):
    """Takes API tokens out of a record's message and its traceback."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "rlt_" in message:
            record.msg, record.args = redact_tokens(message), None
        if record.exc_info and not record.exc_text:
            # formatted here, once: a handler's Formatter uses exc_text when it is set
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_tokens(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_tokens(record.stack_info)
        return True


def install() -> None:
    """Add the redactors to the server's loggers, once."""
    _add(logging.getLogger(ACCESS_LOGGER), QueryStringRedactor)
    for name in (ACCESS_LOGGER, *TEXT_LOGGERS):
        _add(logging.getLogger(name), TokenRedactor)


def _add(logger: logging.Logger, kind: type[logging.Filter]) -> None:
    if not any(isinstance(f, kind) for f in logger.filters):
        logger.addFilter(kind())
