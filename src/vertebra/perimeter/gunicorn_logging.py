"""gunicorn's logger with patient-link tokens redacted (``logger_class`` of ``vertebra serve``)."""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger

from vertebra.perimeter.logredact import redact


class GunicornLogger(Logger):
    """Access-log atoms that carry the request line or path (``r``, ``U``, ``f``) go through
    :func:`~vertebra.perimeter.logredact.redact`; the query string (``q``) is never logged;
    error-log messages (which may quote a request line) are redacted too."""

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        values: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        for name in ("r", "U", "f"):
            if isinstance(values.get(name), str):
                values[name] = redact(values[name])
        values["q"] = ""
        return values

    def error(self, msg: str, *args: Any, **kwargs: Any) -> None:
        super().error(redact(str(msg % args if args else msg)), **kwargs)

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> None:
        super().warning(redact(str(msg % args if args else msg)), **kwargs)
