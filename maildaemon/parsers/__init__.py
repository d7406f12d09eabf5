"""Raw email bytes -> ``maildaemon.model.Message``."""

from maildaemon.parsers.message import HEADER_FIELDS, parse_message, strip_from_line

__all__ = ["HEADER_FIELDS", "parse_message", "strip_from_line"]
