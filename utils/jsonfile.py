"""Reading a JSON input file the user named: a missing or unreadable file is
one UserError naming it.  No paddle here (writing is utils/publish.py's)."""
import json
import os

from .errors import UserError


def read_json(path, what=None, want_object=False):
    """The parsed JSON of ``path``; ``what`` (e.g. ``--benchmark``) prefixes
    the error message; ``want_object``: anything but a JSON object is an error."""
    where = f"{what} {path}" if what else str(path)
    if not os.path.isfile(path):
        raise UserError(f"{where}: no such file")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"{where}: not readable JSON ({e})")
    if want_object and not isinstance(data, dict):
        raise UserError(f"{where}: not a JSON object")
    return data
