"""A stand-in for a tinylm board at the far end of a serial port: a pseudo-terminal pair, with
this thread playing the firmware on the master side of docs/protocol.md, and `tinylm chat`
opening the slave side (/dev/pts/N) as it would open /dev/ttyUSB0.

Its input handling is the protocol document's pseudo-code (a fixed line buffer that drops the
rest of an over-long line and then reports it), so the tests check the client against the
behaviour the firmware is specified to have. Misbehaviour on request: going silent or
vanishing mid-answer, answering forever until cancelled, having no model, chattering logs.
"""
from __future__ import annotations

import os
import select
import threading
import time
import tty

from tinylm.boards import protocol

CR, LF = 0x0D, 0x0A


def echo_tokens(prompt: bytes) -> list[bytes]:
    """The default answer: text that exercises the framing (newlines, backslashes)."""
    return [b" and", b" then", b"\n", b"it said \"", prompt, b"\" \\o/", b"\r\n", b"The end."]


class FakeBoard:
    def __init__(self, tokens=echo_tokens, max_line: int = protocol.MAX_LINE,
                 advertise_max_line: bool = True, crlf: bool = False, model: bool = True,
                 chatter: bool = False, fail_after: int | None = None, vanish: bool = False,
                 endless: bool = False, token_delay: float = 0.0, proto: int = protocol.VERSION):
        self.tokens, self.max_line, self.crlf, self.model = tokens, max_line, crlf, model
        self.chatter, self.fail_after, self.vanish = chatter, fail_after, vanish
        self.endless, self.token_delay = endless, token_delay
        ready = f"@ready proto={proto} board=fake model=echo params=42"
        self.ready = (ready + f" max_line={max_line}" if advertise_max_line else ready).encode()
        self.received = bytearray()      # every byte the host sent
        self.prompts: list[bytes] = []   # every complete line answered
        self.tokens_sent = 0
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)           # no echo, no line editing: a plain serial line
        self.path = os.ttyname(self.slave)
        self.pending = bytearray()       # bytes read but not yet handled
        self.line, self.discarding, self.last_was_cr = bytearray(), False, False
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    # ---- the line: bytes in and out ------------------------------------------------------

    def send_line(self, text: bytes) -> None:
        self.write(text + (b"\r\n" if self.crlf else b"\n"))

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def read_available(self, wait: float) -> bytes:
        if not select.select([self.master], [], [], wait)[0]:
            return b""
        try:
            data = os.read(self.master, 4096)
        except OSError:                  # the host closed the port
            return b""
        self.received += data
        return data

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                self.pending += self.read_available(0.05)
                while self.pending and not self.stopping.is_set():
                    self.on_byte(self.pending.pop(0))
        except OSError:                  # vanished: the master side is closed
            pass

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        if self.master is not None:
            os.close(self.master)
        os.close(self.slave)

    # ---- the firmware ---------------------------------------------------------------------

    def on_byte(self, c: int) -> None:
        """docs/protocol.md, "reading lines without overflowing"."""
        if c == protocol.CANCEL[0]:
            self.line.clear()
            self.discarding = False
            return
        if c == protocol.HELLO[0]:
            self.hello()
            return
        if c == LF and self.last_was_cr:
            self.last_was_cr = False
            return
        self.last_was_cr = c == CR
        if c in (CR, LF):
            if self.discarding:
                self.send_line(b"@error line-too-long the line was longer than "
                               + str(self.max_line).encode() + b" bytes")
                self.discarding = False
            else:
                self.answer(bytes(self.line))
            self.line.clear()
            return
        if self.discarding:
            return
        if len(self.line) == self.max_line:
            self.discarding = True
            return
        self.line.append(c)

    def hello(self) -> None:
        if self.chatter:
            self.send_line(b"I (312) boot: ESP-IDF v5.2 2nd stage bootloader")
            self.send_line(b"@readyish not a protocol line")
        self.send_line(self.ready if self.model else self.no_model())

    def no_model(self) -> bytes:
        return b"@error no-model no model at flash 0x110000: flash one with tinylm flash esp32"

    def answer(self, prompt: bytes) -> None:
        self.prompts.append(prompt)
        if not self.model:
            self.send_line(self.no_model())
            return
        tokens = self.tokens(prompt)
        self.write(b"@text ")
        sent, start, stop = 0, time.monotonic(), "eos"
        while sent < len(tokens) or self.endless:
            if self.fail_after is not None and sent == self.fail_after:
                if self.vanish:
                    os.close(self.master)    # unplugged: the host's next read fails
                    self.master = None
                    raise OSError("vanished")
                self.stopping.wait()         # hung: silent until the test ends
                return
            if self.cancel_requested():
                stop = "cancel"
                break
            self.write(protocol.escape(tokens[sent % len(tokens)]))
            sent += 1
            self.tokens_sent += 1
            time.sleep(self.token_delay)
        self.write(b"\r\n" if self.crlf else b"\n")
        ms = max(1, round((time.monotonic() - start) * 1000))
        self.send_line(f"@done tokens={sent} ms={ms} tok_s={sent * 1000 / ms:.2f} "
                       f"stop={stop} prompt=3".encode())

    def cancel_requested(self) -> bool:
        """Between tokens: a 0x03 stops the answer, bytes after it wait for the idle loop,
        anything before it is dropped."""
        self.pending += self.read_available(0)
        if protocol.CANCEL[0] not in self.pending:
            self.pending.clear()
            return False
        del self.pending[:self.pending.index(protocol.CANCEL[0]) + 1]
        return True
