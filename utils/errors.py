"""User-facing errors: one clear line, exit code 2, nothing half-written."""
import sys


class UserError(Exception):
    """Bad input from the user (file, row, label, flag).  The message names
    the file and line, or the flag, and is printed as a single line."""


def run_main(main, argv=None):
    """Run ``main(argv)``; turn a UserError into one line on stderr and exit 2."""
    try:
        return main(argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
