"""NextPVR's salted PIN hash for ``session.login``.

The server hands out a salt with ``session.initiate``; the login proves knowledge of the
PIN without sending it: ``md5(":" + lowercase_hex(md5(pin)) + ":" + salt)``. The inner
digest must be lowercase hex because it is part of the outer input; the case of the
outer digest does not matter to the server, so we send lowercase like most clients.
"""

from __future__ import annotations

import hashlib

__all__ = ["login_hash"]


def login_hash(pin: str, salt: str) -> str:
    """The ``md5`` parameter of ``session.login`` for ``pin`` and the session's ``salt``."""
    inner = hashlib.md5(pin.encode("utf-8"), usedforsecurity=False).hexdigest().lower()
    outer = f":{inner}:{salt}".encode()
    return hashlib.md5(outer, usedforsecurity=False).hexdigest()
