"""Logging set-up: one line per record, to a file and to the terminal."""

import logging
import sys
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"


def configure_logging(log_path: Path | None, console_level: int = logging.INFO) -> None:
    """Log INFO and above to ``log_path`` and ``console_level`` and above to stderr."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in list(root.handlers):
        root.removeHandler(handler)

    console = logging.StreamHandler(sys.stderr)
    console.setLevel(console_level)
    console.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(console)

    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_path)
        file_handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(file_handler)

    # The Kafka client logs every group join and metadata refresh at INFO.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    # httpx logs every readiness poll of `boxoffice up` at INFO.
    logging.getLogger("httpx").setLevel(logging.WARNING)
