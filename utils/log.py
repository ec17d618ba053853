"""The suite's log format, without paddle or paddlenlp.

Every entry point logs to the ``bert_suite`` logger on stdout as
``[HH:MM:SS] LEVEL message``.  Scripts that never touch paddlenlp
(benchmark.py, report.py) call :func:`setup_logging` directly; the training
scripts add paddlenlp's quieting on top of it.
"""
import logging
import sys

LOGGER = "bert_suite"
FORMAT = "[%(asctime)s] %(levelname)s %(message)s"
DATEFMT = "%H:%M:%S"


def setup_logging(level=logging.INFO):
    """Log ``bert_suite`` at ``level`` to stdout (one handler, however often called)."""
    logger = logging.getLogger(LOGGER)
    if not logger.handlers:
        h = logging.StreamHandler(sys.stdout)
        h.setFormatter(logging.Formatter(FORMAT, DATEFMT))
        logger.addHandler(h)
    logger.setLevel(level)
    logger.propagate = False
    return logger
