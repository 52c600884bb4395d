"""The serial line protocol of tinylm firmware, host side (docs/protocol.md specifies it).

`Parser` turns the bytes a device sends into events as they arrive, so the text of an answer
comes out token by token while its line is still being sent.
"""
from __future__ import annotations

from dataclasses import dataclass

VERSION = 1
MAX_LINE = 255              # bytes of a prompt line before its line end, unless @ready says
CANCEL = b"\x03"            # stop the answer under way, or drop a partly sent line
HELLO = b"\x05"             # ask for the @ready line again
TEXT_START = b"@text "
LONGEST_OTHER = 4096        # a line that is not the protocol is cut into pieces of this size
UNESCAPE = {ord("\\"): b"\\", ord("n"): b"\n", ord("r"): b"\r"}


@dataclass
class Ready:
    fields: dict[str, str]


@dataclass
class Text:
    data: bytes             # a piece of the answer, unescaped: raw bytes, maybe not whole UTF-8


@dataclass
class TextEnd:
    pass


@dataclass
class Done:
    fields: dict[str, str]


@dataclass
class Error:
    code: str
    message: str


@dataclass
class Other:
    line: bytes             # a line that is not part of the protocol (boot messages, logs)


Event = Ready | Text | TextEnd | Done | Error | Other


def escape(text: bytes) -> bytes:
    """Token text as a device sends it inside an @text line."""
    return text.replace(b"\\", b"\\\\").replace(b"\n", b"\\n").replace(b"\r", b"\\r")


def parse_fields(text: bytes) -> dict[str, str]:
    """`key=value key=value` to a dict; a word without `=` is skipped."""
    pairs = (word.partition(b"=") for word in text.split())
    return {key.decode("ascii", "replace"): value.decode("utf-8", "replace")
            for key, sep, value in pairs if sep}


class Parser:
    """Feed it the bytes from the device as they come; it returns the events they complete."""

    def __init__(self):
        self.line = bytearray()     # the line so far, unless it is an @text line
        self.in_text = False        # inside an @text line: bytes are text until LF
        self.backslash = False      # the last text byte was an escaping backslash

    def feed(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        while data:
            end = data.find(b"\n")
            head, rest = (data, b"") if end < 0 else (data[:end], data[end + 1:])
            if self.in_text:
                text = self.unescape(head)
                if text:
                    events.append(Text(text))
                if end >= 0:
                    self.in_text = self.backslash = False
                    events.append(TextEnd())
            else:
                self.line += head
                if self.line.startswith(TEXT_START):
                    # From here on the line is text: go round again with what follows "@text ".
                    self.in_text = True
                    data = bytes(self.line[len(TEXT_START):]) + data[len(head):]
                    self.line.clear()
                    continue
                if end >= 0:
                    events.append(line_event(bytes(self.line).rstrip(b"\r")))
                    self.line.clear()
                elif len(self.line) > LONGEST_OTHER:   # noise with no line end: never kept whole
                    events.append(Other(bytes(self.line)))
                    self.line.clear()
            data = rest
        return events

    def unescape(self, data: bytes) -> bytes:
        out = bytearray()
        for byte in data:
            if self.backslash:
                out += UNESCAPE.get(byte, b"\\" + bytes([byte]))   # unknown escape: keep it
                self.backslash = False
            elif byte == ord("\\"):
                self.backslash = True
            elif byte != ord("\r"):     # text never holds a raw CR: it is the CR of a CR LF
                out.append(byte)
        return bytes(out)


def line_event(line: bytes) -> Event:
    tag, _, rest = line.partition(b" ")
    if tag == b"@ready":
        return Ready(parse_fields(rest))
    if tag == b"@done":
        return Done(parse_fields(rest))
    if tag == b"@error":
        code, _, message = rest.partition(b" ")
        return Error(code.decode("utf-8", "replace"), message.decode("utf-8", "replace"))
    if tag == b"@text":             # "@text" alone: an empty answer
        return TextEnd()
    return Other(line)
