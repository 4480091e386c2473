"""Flask's JSON encoding on orjson: the same documents as Flask's own provider, several times faster.

Parsing stays with the standard library (``loads``): the kit reports an unpaired surrogate in a
request body as a 422 naming the field, which needs the decoder to accept what orjson refuses.
"""

from __future__ import annotations

from typing import Any

import orjson
from flask.json.provider import DefaultJSONProvider
from werkzeug.sansio.response import Response

# Flask's rules kept: dates as HTTP dates (through its ``default``), UTF-8 output. A dict with a
# key that is not a string takes the standard library's path (orjson would sort 10 before 9).
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME


class OrjsonProvider(DefaultJSONProvider):
    """``app.json`` for every Flotilla service: ``jsonify``, ``flask.json.dumps`` and responses."""

    def _options(self) -> int:
        return _OPTIONS | (orjson.OPT_SORT_KEYS if self.sort_keys else 0)

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        """Like Flask's; keyword arguments (the standard library's) take the standard path."""
        if kwargs:
            return super().dumps(obj, **kwargs)
        return self._encode(obj, self._options(), {}).decode()

    def response(self, *args: Any, **kwargs: Any) -> Response:
        """A JSON response, compact unless in debug mode, as Flask's (with its final newline)."""
        obj = self._prepare_response_obj(args, kwargs)
        options = self._options() | orjson.OPT_APPEND_NEWLINE
        layout: dict[str, Any] = {"separators": (",", ":")}
        if (self.compact is None and self._app.debug) or self.compact is False:
            options |= orjson.OPT_INDENT_2
            layout = {"indent": 2}
        # The app's response class (flask.Response) takes a body first; the typed attribute does not say so.
        response_class: Any = self._app.response_class
        response: Response = response_class(self._encode(obj, options, layout), mimetype=self.mimetype)
        return response

    def _encode(self, obj: Any, options: int, layout: dict[str, Any]) -> bytes:
        try:
            return orjson.dumps(obj, default=self.default, option=options)
        except orjson.JSONEncodeError:
            # The standard library decides what orjson cannot hold (an integer beyond 64 bits, a
            # key that is not a string), laid out alike; an unknown type raises Flask's TypeError.
            newline = "\n" if options & orjson.OPT_APPEND_NEWLINE else ""
            return (super().dumps(obj, **layout) + newline).encode()
