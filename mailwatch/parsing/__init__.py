"""Parsers: text or bytes in, model values out. No I/O, no clock."""
