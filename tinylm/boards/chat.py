"""`tinylm chat`: talk to a model running on a board, over its serial port (docs/protocol.md),
or (chat_here) to a .bin run by the C runtime in this process, sampled as the firmware samples.

A board whose @ready line says chat=1 serves a chat model: it takes each line as a question,
and only its reply is printed. The client never waits without a limit: it gives up after
`timeout` seconds without a word of the protocol, whether the port is silent (a board that
hangs or is unplugged) or keeps sending something else (a board that resets over and over, a
wrong baud rate, noise), so that ends the answer with a message instead of a hung terminal.
Ctrl-C during an answer asks the board to stop (and a second Ctrl-C leaves at once).
"""
from __future__ import annotations

import codecs
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ..export.binformat import read_bin
from ..optional import require
from ..runtime.c_engine import CEngine
from ..training.generate import stream_text
from . import protocol as p

STOP_REASONS = {"eos": "end of text", "length": "token limit", "context": "context full",
                "cancel": "stopped"}


class DeviceError(OSError):
    """The board cannot be talked to any more: gone, silent, or with no usable model."""


class Unanswered(ValueError):
    """One prompt got no answer (too long, refused by the board), but the board is fine."""


class Link:
    """An open serial port to a board, read as protocol events."""

    def __init__(self, port: str, baud: int, timeout: float):
        serial = require("serial", "pyserial", "tinylm chat")
        self.name, self.timeout = port, timeout
        # Set the lines before opening: DTR on (pico-sdk USB stdio sends only then), RTS off
        # (on ESP32 boards RTS is wired to reset).
        self.port = serial.serial_for_url(port, do_not_open=True, baudrate=baud, timeout=timeout)
        self.port.dtr, self.port.rts = True, False
        try:
            self.port.open()
        except OSError as e:          # pyserial's message names the port and the reason
            raise DeviceError(e.strerror or str(e)) from None
        self.parser = p.Parser()
        self.heard = time.monotonic()     # when the board last said something of the protocol

    def close(self) -> None:
        self.port.close()

    def send(self, data: bytes) -> None:
        try:
            self.port.write(data)
            self.port.flush()
        except OSError as e:          # pyserial's SerialException is one too
            raise DeviceError(f"lost the connection to {self.name}: {e}") from None

    def read_events(self, waiting_for: str) -> list[p.Event]:
        """The events completed by the next bytes from the board (maybe none: a partial line).
        DeviceError after `timeout` seconds of silence or of bytes that are not the protocol,
        or when the port goes away."""
        if time.monotonic() - self.heard > self.timeout:
            raise DeviceError(f"{self.name} kept sending for {self.timeout:g} s, but nothing "
                              f"of the tinylm protocol, while waiting for {waiting_for}: a "
                              "wrong --baud, a board that keeps restarting, or another program "
                              "on it?")
        try:
            data = self.port.read(self.port.in_waiting or 1)
        except OSError as e:
            raise DeviceError(f"lost the connection to {self.name} while waiting for "
                              f"{waiting_for} (unplugged?): {e}") from None
        if not data:
            raise DeviceError(f"{self.name} sent nothing for {self.timeout:g} s while waiting "
                              f"for {waiting_for}: the board may have reset, hung or been "
                              "unplugged (--timeout sets how long to wait)")
        events = self.parser.feed(data)
        if any(not isinstance(event, p.Other) for event in events):
            self.heard = time.monotonic()
        return events

    def hello(self) -> dict[str, str]:
        """Make the board say what it is: end whatever it was doing, ask for @ready."""
        self.port.reset_input_buffer()
        self.send(p.CANCEL + p.HELLO)
        self.heard = time.monotonic()
        waiting_for = (f"a tinylm board to answer (is its firmware running, at "
                       f"{self.port.baudrate} baud?)")
        while True:
            for event in self.read_events(waiting_for):
                if isinstance(event, p.Ready):
                    return event.fields
                if isinstance(event, p.Error):
                    raise DeviceError(f"{self.name}: {event.message or event.code}")
                # Anything else is from before: boot messages, the end of an old answer.


@dataclass
class Answer:
    stats: dict[str, str]       # the fields of @done
    invalid_utf8: bool          # the board sent bytes that are not UTF-8 (shown as U+FFFD)


def check_prompt(prompt: str, max_line: int | None = None) -> bytes:
    """The prompt as the line to send, or Unanswered saying why it cannot be sent (a line,
    UTF-8, of at most `max_line` bytes if there is such a limit)."""
    if any(c in prompt for c in "\r\n"):
        raise Unanswered("a prompt is one line: it cannot contain a line break")
    if any(ord(c) < 0x20 and c != "\t" for c in prompt):
        raise Unanswered("a prompt cannot contain control characters")
    try:
        line = prompt.encode("utf-8")
    except UnicodeEncodeError as e:     # bytes that were not UTF-8, kept by Python as surrogates
        raise Unanswered(f"the prompt is not valid UTF-8 (from character {e.start + 1} on): "
                         "the board takes UTF-8 text") from None
    if max_line is not None and len(line) > max_line:
        raise Unanswered(f"the prompt is {len(line)} bytes in UTF-8, {len(line) - max_line} "
                         f"more than the {max_line} the board takes on a line: shorten it")
    return line


class Transcript:
    """One answer as it streams in, after its prompt: printed piece by piece, decoded as UTF-8
    across token boundaries (a character's bytes can come in two tokens)."""

    def __init__(self, prompt: str, out: TextIO, err: TextIO):
        self.out, self.err = out, err
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.received = bytearray()
        self.replaced = 0               # U+FFFD characters in what was shown
        self.line_open = False
        self.show(prompt)

    def show(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()
        if text:
            self.line_open = not text.endswith("\n")

    def show_text(self, text: str) -> None:
        self.replaced += text.count("\ufffd")
        self.show(text)

    def end_line(self) -> None:
        if self.line_open:
            self.show("\n")

    def handle(self, event: p.Event) -> Answer | None:
        """Take one event; the Answer once the board closes it with @done."""
        if isinstance(event, p.Text):
            self.received += event.data
            self.show_text(self.decoder.decode(event.data))
        elif isinstance(event, p.TextEnd):
            self.show_text(self.decoder.decode(b"", final=True))
            self.end_line()
        elif isinstance(event, p.Done):
            self.end_line()
            # A U+FFFD that the board meant arrives as EF BF BD; any other is the decoder's.
            return Answer(event.fields, self.replaced > self.received.count("\ufffd".encode()))
        elif isinstance(event, (p.Error, p.Ready)):
            self.end_line()
            raise Unanswered("the board restarted in the middle of the answer"
                             if isinstance(event, p.Ready)
                             else f"the board says: {event.message or event.code}")
        elif isinstance(event, p.Other):
            self.err.write(f"| {event.line.decode('utf-8', 'replace')}\n")
        return None


def ask(link: Link, prompt: str, max_line: int, out: TextIO, err: TextIO,
        question: bool = False) -> Answer:
    """Send one prompt; print it (unless it is a chat model's question) and the answer as it
    streams to `out`; return the answer."""
    line = check_prompt(prompt, max_line)
    link.send(line + b"\n")
    link.heard = time.monotonic()
    transcript = Transcript("" if question else prompt, out, err)
    pending: list[p.Event] = []
    cancelled = False
    while True:
        try:
            while not pending:
                pending = link.read_events("the answer")
            answer = transcript.handle(pending.pop(0))
            if answer is not None:
                return answer
        except DeviceError:
            transcript.end_line()       # the message that follows gets a line of its own
            raise
        except KeyboardInterrupt:
            if cancelled:
                raise
            cancelled = True        # ask the board to stop; it still closes with @done
            link.send(p.CANCEL)


def describe(stats: dict[str, str]) -> str:
    facts = [f"{stats.get('tokens', '?')} tokens", f"{stats.get('tok_s', '?')} tok/s"]
    if "stop" in stats:
        facts.append(STOP_REASONS.get(stats["stop"], stats["stop"]))
    return "[" + ", ".join(facts) + "]"


def answer_and_report(link: Link, prompt: str, max_line: int, out: TextIO, err: TextIO,
                      question: bool = False) -> Answer:
    answer = ask(link, prompt, max_line, out, err, question)
    err.write(describe(answer.stats) + "\n")
    if answer.invalid_utf8:
        err.write("note: the board sent bytes that are not valid UTF-8; they are shown as "
                  "\ufffd\n")
    return answer


def read_prompt(stdin: TextIO) -> str | None:
    """The next line typed (None at the end of input); a prompt sign only for a person."""
    if stdin.isatty():
        try:
            return input("> ")
        except EOFError:                # Ctrl-D: what the shell prints next gets its own line
            print()
            return None
    line = stdin.readline()
    return line.rstrip("\r\n") if line else None


def chat(port: str, baud: int = 115200, prompt: str | None = None, timeout: float = 10.0) -> int:
    """One prompt (for scripts), or a session reading prompts from stdin until its end.
    Returns the exit status: 130 if the one prompt's answer was stopped with Ctrl-C."""
    stdin, out, err = sys.stdin, sys.stdout, sys.stderr
    # Typed bytes that are not UTF-8 reach check_prompt, which says so, instead of ending the
    # session with a decoding error.
    stdin.reconfigure(errors="surrogateescape")
    link = Link(port, baud, timeout)
    try:
        info = link.hello()
        if info.get("proto") != str(p.VERSION):
            raise DeviceError(f"the board speaks protocol version {info.get('proto')}, this "
                              f"tinylm speaks {p.VERSION}: update one of them")
        max_line = int(info["max_line"]) if info.get("max_line", "").isdigit() else p.MAX_LINE
        question = info.get("chat") == "1"
        details = " ".join(f"{k}={v}" for k, v in info.items() if k != "proto")
        err.write(f"connected to {port}: {details}\n")
        return session(prompt, question, stdin, err, lambda line: answer_and_report(
            link, line, max_line, out, err, question))
    finally:
        link.close()


def session(prompt: str | None, question: bool, stdin: TextIO, err: TextIO, answer) -> int:
    """One prompt, or a prompt a line until the end of input, each given to answer(line).
    Returns the exit status: 130 if the one prompt's answer was stopped with Ctrl-C."""
    if prompt is not None:
        return 130 if answer(prompt).stats.get("stop") == "cancel" else 0
    if stdin.isatty():
        err.write(f"Type a {'question' if question else 'prompt'} and press Enter; Ctrl-C "
                  f"stops an answer, Ctrl-D quits.\n")
    while (line := read_prompt(stdin)) is not None:
        try:
            answer(line)
        except Unanswered as e:
            err.write(f"{e}\n")
    return 0


def chat_here(model_path: str | Path, prompt: str | None = None, seed: int = 0,
              max_tokens: int = 256) -> int:
    """`tinylm chat --model`: a session like one with a board, the model run by the C runtime
    in this process with the firmware's sampling (temperature 1, top-p 0.9, the sampler
    reseeded for every prompt), so it prints what a board with that model prints."""
    stdin, out, err = sys.stdin, sys.stdout, sys.stderr
    stdin.reconfigure(errors="surrogateescape")
    model, engine = read_bin(model_path), CEngine(model_path)
    tokenizer, chat_turn = model.tokenizer, model.chat

    def answer(line: str) -> Answer:
        check_prompt(line)
        ids = (chat_turn.prompt_ids(tokenizer, line) if chat_turn else
               tokenizer.encode(line, bos=True))
        if len(ids) >= engine.context:
            raise Unanswered(f"the prompt does not fit in the context of {engine.context} tokens")
        out.write("" if chat_turn else line)
        made, stop, started = [], "length", time.perf_counter()

        def tokens():
            for token in engine.generate(ids, max_tokens, 1.0, 0, 0.9, seed):
                made.append(token)
                yield token
        try:
            for piece in stream_text(tokenizer, tokens(), ids):
                out.write(piece)
                out.flush()
            if len(made) < max_tokens:   # as the device loop tells a full context from an end
                stop = "context" if len(ids) + len(made) + 1 >= engine.context else "eos"
        except KeyboardInterrupt:
            stop = "cancel"
        out.write("\n")
        seconds = max(time.perf_counter() - started, 1e-6)
        stats = {"tokens": str(len(made)), "tok_s": f"{len(made) / seconds:.2f}", "stop": stop}
        err.write(describe(stats) + "\n")
        return Answer(stats, False)

    err.write(f"{model_path}: " + ("a chat model, answering each question" if chat_turn else
                                   "a text model, continuing each prompt") + "\n")
    return session(prompt, chat_turn is not None, stdin, err, answer)
