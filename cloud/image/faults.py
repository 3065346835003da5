"""Glance's fault format.

Glance raises webob HTTP exceptions with an ``explanation``; webob renders them for a client that
accepts JSON as a flat object: the explanation run through webob's body template (hence the
``<br /><br />`` tail real Glance sends), the status line as ``code`` and the reason as ``title``::

    {"message": "No image found with ID 1f3e...<br /><br />\\n\\n\\n",
     "code": "404 Not Found", "title": "Not Found"}

openstacksdk reads ``message`` from such a flat body. A missing or bad token never reaches Glance:
keystonemiddleware answers first, in Keystone's ``{"error": {...}}`` format, so 401s here do too.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from cloud.api.errors import ApiError, keystone_fault

# webob's body template for an exception with an explanation and no detail or comment.
_WEBOB_TAIL = "<br /><br />\n\n\n"
# webob's titles where newer Pythons renamed the status (413 became "Content Too Large").
_WEBOB_TITLES = {413: "Request Entity Too Large", 422: "Unprocessable Entity"}


def glance_fault(error: ApiError) -> dict[str, Any]:
    if error.status == 401:
        return keystone_fault(error)
    reason = _WEBOB_TITLES.get(error.status)
    if reason is None:
        try:
            reason = HTTPStatus(error.status).phrase
        except ValueError:
            reason = error.title
    return {
        "message": error.message + _WEBOB_TAIL,
        "code": f"{error.status} {reason}",
        "title": reason,
    }
