"""The one error type the product raises for things a user can act on.

Every stage's own error (a broken collection, a model that cannot load, a bad
setting, a failed generation) derives from ``KbError``, so the CLI, the UI and
a server can catch one type and show its message, while code that must tell
them apart still can.

Deliberately not here: the stages' errors themselves (each lives with the code
that raises it), programming errors (they stay ordinary exceptions).
"""

from __future__ import annotations


class KbError(Exception):
    """Something went wrong that the message explains to the user."""
