"""`tinylm chat` end to end: the real command, run as a process, on the slave side of a
pseudo-terminal whose master side plays the board (tests/fake_board.py)."""
import os
import select
import signal
import subprocess
import sys
import threading
import time
import tty
from pathlib import Path

import pytest
from click.testing import CliRunner
from fake_board import FakeBoard, echo_tokens

from tinylm.boards.chat import Unanswered, check_prompt
from tinylm.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def board():
    boards = []

    def start(**options):
        boards.append(FakeBoard(**options))
        return boards[-1]

    yield start
    for b in boards:
        b.stop()


def chat_command(port, *args):
    return [sys.executable, "-m", "tinylm", "chat", "--port", port, "--timeout", "2", *args]


def chat(port, *args, stdin=""):
    return subprocess.run(chat_command(port, *args), cwd=ROOT, input=stdin, capture_output=True,
                          text=True, encoding="utf-8", timeout=60)


def expected_text(prompt: str) -> str:
    """What the client prints for a prompt the fake board answers with echo_tokens."""
    answer = b"".join(echo_tokens(prompt.encode())).decode()
    return prompt + answer.replace("\r\n", "\n") + "\n"   # text mode reads CR LF as LF


def wait_until(condition, seconds=10):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.parametrize("options", [{}, {"crlf": True, "chatter": True}],
                         ids=["lf", "crlf-and-logs"])
def test_one_prompt_streams_its_answer_and_the_speed(board, options):
    b = board(**options)
    result = chat(b.path, "--prompt", "Once upon a time")
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected_text("Once upon a time")
    assert "connected to" in result.stderr and "model=echo" in result.stderr
    assert "[8 tokens," in result.stderr and "tok/s, end of text]" in result.stderr
    assert b.received == b"\x03\x05Once upon a time\n"


def test_a_session_answers_each_line_of_input(board):
    b = board()
    result = chat(b.path, stdin="first\nsecond\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected_text("first") + expected_text("second")
    assert result.stderr.count("tokens,") == 2
    assert b.prompts == [b"first", b"second"]


def test_an_over_long_prompt_is_refused_before_sending(board):
    b = board()
    prompt = "é" * 128                      # 256 bytes of UTF-8, one over the limit
    result = chat(b.path, "--prompt", prompt)
    assert result.returncode == 1
    assert "256 bytes in UTF-8, 1 more than the 255" in result.stderr
    assert b.received == b"\x03\x05"        # nothing but the greeting went out


@pytest.mark.parametrize("prompt, message", [
    ("two\nlines", "a prompt is one line"),
    ("bell\a", "cannot contain control characters"),
    ("x" * 256, "256 bytes in UTF-8, 1 more than the 255"),
])
def test_prompts_that_cannot_be_sent(prompt, message):
    with pytest.raises(Unanswered, match=message):
        check_prompt(prompt, 255)
    assert check_prompt("\tx" * 85, 255) == b"\tx" * 85      # 255 bytes, tabs allowed


def test_a_session_goes_on_after_an_over_long_line(board):
    b = board(max_line=16, advertise_max_line=False)     # the client assumes 255
    result = chat(b.path, stdin="x" * 40 + "\nshort\n" + "y" * 300 + "\n")
    assert result.returncode == 0, result.stderr
    # The board dropped the rest of the 40-byte line and said so; the next line was clean.
    assert "the board says: the line was longer than 16 bytes" in result.stderr
    assert "the prompt is 300 bytes in UTF-8, 45 more than the 255" in result.stderr
    assert b.prompts == [b"short"]
    assert expected_text("short") in result.stdout


@pytest.mark.parametrize("tokens, shown, note", [
    ([b"caf\xc3", b"\xa9 ", b"\xff\xfe", b" ok"], "café \ufffd\ufffd ok", True),
    ([b"a \xef\xbf", b"\xbd b"], "a \ufffd b", False),     # a real U+FFFD, split in two
], ids=["invalid", "valid-replacement-character"])
def test_bytes_that_are_not_utf8_are_replaced_and_reported(board, tokens, shown, note):
    b = board(tokens=lambda prompt: tokens)
    result = chat(b.path, "--prompt", "x")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "x" + shown + "\n"
    assert ("not valid UTF-8" in result.stderr) == note


def test_a_board_that_goes_silent_mid_answer_times_out(board):
    b = board(fail_after=2)
    result = chat(b.path, "--prompt", "hello", "--timeout", "0.5")    # hangs: TimeoutExpired
    assert result.returncode == 1
    assert result.stdout == "hello and then\n"    # what came before the silence, and a line end
    assert "sent nothing for 0.5 s while waiting for the answer" in result.stderr


def test_a_board_that_vanishes_mid_answer_is_reported(board):
    b = board(fail_after=2, vanish=True)
    result = chat(b.path, "--prompt", "hello")
    assert result.returncode == 1
    assert "lost the connection to" in result.stderr and "unplugged" in result.stderr


def test_nothing_answering_on_the_port_times_out():
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        result = chat(os.ttyname(slave), "--prompt", "hello", "--timeout", "0.5")
    finally:
        os.close(master)
        os.close(slave)
    assert result.returncode == 1
    assert "sent nothing for 0.5 s while waiting for a tinylm board to answer" in result.stderr


@pytest.mark.parametrize("noise", [b"rst:0x10 (RTCWDT_RTC_RESET),boot:0x13\r\n",   # boot loop
                                   bytes(range(256)) * 4])                        # wrong baud
def test_a_port_that_keeps_talking_without_the_protocol_times_out(noise):
    master, slave = os.openpty()
    tty.setraw(slave)
    stop = threading.Event()

    def babble():
        while not stop.is_set():
            try:
                os.write(master, noise)
            except OSError:
                return
            time.sleep(0.01)
            if select.select([master], [], [], 0)[0]:
                os.read(master, 4096)
    talker = threading.Thread(target=babble, daemon=True)
    talker.start()
    try:
        result = chat(os.ttyname(slave), "--prompt", "hello", "--timeout", "1")
    finally:
        stop.set()
        talker.join()
        os.close(master)
        os.close(slave)
    assert result.returncode == 1
    assert "kept sending for 1 s, but nothing of the tinylm protocol" in result.stderr


@pytest.mark.parametrize("options, message", [
    ({"model": False}, "no model at flash 0x110000"),
    ({"proto": 2}, "the board speaks protocol version 2, this tinylm speaks 1"),
])
def test_a_board_that_cannot_answer_says_why(board, options, message):
    b = board(**options)
    result = chat(b.path, "--prompt", "hello")
    assert result.returncode == 1
    assert message in result.stderr
    assert b.prompts == []


def test_without_pyserial_chat_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "serial", None)       # import serial now fails
    result = CliRunner().invoke(main, ["chat", "--port", "/dev/ttyUSB0", "--prompt", "hi"])
    assert result.exit_code == 1
    assert result.stderr == ("error: tinylm chat needs the Python package pyserial, which is "
                             "not installed: pip install 'tinylm[flash]'\n")


def test_a_missing_port_is_one_line_of_error():
    result = chat("/dev/no-such-port", "--prompt", "hello")
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and "/dev/no-such-port" in result.stderr


def start_chat(port, *args, **popen_options):
    """`tinylm chat` as a process that Ctrl-C (SIGINT) reaches: a shell running the tests in
    the background may have SIGINT ignored, and a child would inherit that."""
    return subprocess.Popen(chat_command(port, *args), cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                            **popen_options)


def interrupt_after_some_tokens(b, process):
    wait_until(lambda: b.tokens_sent >= 3)
    process.send_signal(signal.SIGINT)


def test_ctrl_c_stops_the_answer_of_one_prompt(board):
    b = board(endless=True, token_delay=0.02)
    process = start_chat(b.path, "--prompt", "go")
    interrupt_after_some_tokens(b, process)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130
    assert b.received.startswith(b"\x03\x05go\n") and b.received.endswith(b"\x03")
    assert "tokens," in err and "stopped]" in err
    assert out.startswith("go and then")


def test_ctrl_c_in_a_session_stops_the_answer_not_the_session(board):
    b = board(endless=True, token_delay=0.02)
    process = start_chat(b.path, stdin=subprocess.PIPE)
    process.stdin.write("go\n")
    process.stdin.flush()
    interrupt_after_some_tokens(b, process)
    wait_until(lambda: b.received.endswith(b"\x03"))
    out, err = process.communicate("", timeout=30)     # then the input ends: a clean exit
    assert process.returncode == 0, err
    assert "stopped]" in err
