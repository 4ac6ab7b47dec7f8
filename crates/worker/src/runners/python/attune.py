"""Attune's helper for python actions: the datastore, with this execution's token.

Put on PYTHONPATH by the python runner (installed nowhere else)::

    from attune import datastore
    url = datastore.get("api_url")                   # None when missing or expired
    datastore.set("last_run", {"ok": True}, ttl_seconds=3600)
    datastore.set("token", "s3cret", encrypted=True)
    datastore.delete("last_run")                     # False when it was not there
    datastore.get("theme", scope="user")

Values are any JSON. Errors raise ``attune.AttuneError`` with the API's message.
The token and API address come from the action's input document (``context``), read by
the runner before the action starts; they are never in the environment.
"""

import json
import urllib.error
import urllib.parse
import urllib.request

_context = {}


class AttuneError(Exception):
    """A datastore call failed: the HTTP status and the API's message."""

    def __init__(self, status, message):
        super().__init__("%s: %s" % (status, message))
        self.status = status
        self.message = message


def _init(context):
    """Called by the runner with the input document's ``context``."""
    _context.clear()
    _context.update(context or {})


def _request(method, path, body=None, query=None):
    if not _context.get("api_token") or not _context.get("api_url"):
        raise AttuneError(0, "no execution context: attune.datastore works inside an action only")
    url = _context["api_url"].rstrip("/") + path
    if query:
        url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
    data = None if body is None else json.dumps(body).encode("utf-8")
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", "Bearer " + _context["api_token"])
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
            return resp.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        raw = e.read()
        message = raw.decode("utf-8", "replace")
        try:
            error = json.loads(raw).get("error")
            message = error.get("message", message) if isinstance(error, dict) else (error or message)
        except (ValueError, AttributeError):
            pass
        return e.code, {"error": message}


def _key_path(key):
    return "/api/v1/datastore/" + urllib.parse.quote(key, safe="")


class _Datastore:
    def get(self, key, scope="tenant"):
        """The value of ``key`` (decrypted), or None when it is missing or expired."""
        status, body = _request("GET", _key_path(key), query={"scope": scope})
        if status == 404:
            return None
        if status != 200:
            raise AttuneError(status, body.get("error") if isinstance(body, dict) else body)
        return body["value"]

    def set(self, key, value, encrypted=False, ttl_seconds=None, scope="tenant"):
        """Creates or replaces ``key``."""
        body = {"key": key, "value": value, "encrypted": encrypted, "scope": scope}
        if ttl_seconds is not None:
            body["ttl_seconds"] = ttl_seconds
        status, answer = _request("POST", "/api/v1/datastore", body=body)
        if status not in (200, 201):
            raise AttuneError(status, answer.get("error") if isinstance(answer, dict) else answer)

    def delete(self, key, scope="tenant"):
        """Deletes ``key``; False when it was not there."""
        status, body = _request("DELETE", _key_path(key), query={"scope": scope})
        if status == 404:
            return False
        if status != 204:
            raise AttuneError(status, body.get("error") if isinstance(body, dict) else body)
        return True


datastore = _Datastore()
