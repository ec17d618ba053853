"""User-facing errors: one clear line, exit code 2, nothing half-written."""
import contextlib
import sys


class UserError(Exception):
    """Bad input from the user (file, row, label, flag).  The message names
    the file and line, or the flag, and is printed as a single line."""


@contextlib.contextmanager
def user_error_from(what, *types):
    """Turn an exception of ``types`` (a library's traceback about a file
    the user gave) into a UserError: ``what`` plus the library's first line."""
    try:
        yield
    except types as e:
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), "")
        raise UserError(f"{what} ({type(e).__name__}: {first})") from None


def run_main(main, argv=None):
    """Run ``main(argv)``; turn a UserError into one line on stderr and exit 2."""
    try:
        return main(argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
