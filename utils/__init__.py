"""Shared helpers of the BERT compression suite.

Every entry point imports ``utils.compat`` first (directly or through this
package) so that the process-wide fixes of the pinned stack are in place
before paddle is imported.
"""
from . import compat  # noqa: F401  (must run before paddle is imported anywhere)
