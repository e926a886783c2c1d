"""Credentials never reach a log line, an error message, ``status`` or ``/health``.

One rule for every URL we print (InfluxDB, Redis, anything else): the user-info part becomes
``***`` (``redis://:secret@host:6379/0`` -> ``redis://***@host:6379/0``) and so does the value of
a ``password``/``passwd``/``pwd``/``token``/``secret``/``key`` query parameter (redis-py accepts
``?password=``). :func:`redact_url` does it to one URL, :func:`redact` to every URL inside a text
(an exception's message), and :class:`RedactingFilter` to every record a logging handler emits
(installed by the command line on its handlers).
"""

from __future__ import annotations

import logging
import re

#: a URL's user info: ``scheme://`` then everything up to the last ``@`` before the path (a
#: password may hold an ``@`` of its own)
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<info>[^/\s?#]*@)")
_SECRET_PARAM = re.compile(
    r"(?P<key>[?&](?:password|passwd|pwd|token|secret|api_?key|key)=)(?P<value>[^&#\s'\"]*)",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by ``***``."""
    if "@" not in text and "=" not in text:
        return text
    text = _USERINFO.sub(r"\g<scheme>***@", text)
    return _SECRET_PARAM.sub(r"\g<key>***", text)


def redact_url(url: str) -> str:
    """``url`` without its credentials (``http://user:secret@host`` -> ``http://***@host``)."""
    return redact(url)


class RedactingFilter(logging.Filter):
    """Rewrites each record's message (and its traceback text) with :func:`redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Add :class:`RedactingFilter` to every handler of ``logger`` (default: the root logger)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
