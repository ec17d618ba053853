"""Shared helpers of the BERT compression suite.

Importing the package imports :mod:`utils.compat`, which is cheap (no paddle):
it sets the environment defaults and the import hook that must be in place
before paddle is imported anywhere.  Modules that need no paddle (errors,
tasks, metrics, publish, report, analysis, ...) never import it.
"""
from . import compat  # noqa: F401  (must run before paddle is imported anywhere)
