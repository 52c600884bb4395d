"""`tinylm chat` against the firmware's own device loop (tinylm/runtime/csrc/serve.c) run on this
computer on a pseudo-terminal (`tinylm serve`, boards/host_board.py): the same text as
`tinylm run`, the protocol's errors, bytes that are not UTF-8, Ctrl-C, a board that dies in
the middle of an answer. Every wait has a limit, so a hang fails the test instead of blocking."""
import dataclasses
import os
import re
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from binmodels import (
    QUESTION,
    SHARED,
    chat_bin_ending_at,
    random_model,
    run_cli,
    run_text,
    stories_bin,
    stories_tokenizer,
    tiny_config,
    tiny_model_bin,
    write_model_bin,
)
from click.testing import CliRunner

from tinylm.boards import protocol
from tinylm.boards.host_board import HostBoard
from tinylm.cli import main
from tinylm.runtime.build import compiler
from tinylm.runtime.c_engine import CEngine

pytest.importorskip("serial", reason="tinylm chat needs pyserial")
try:
    compiler()
except OSError as e:
    pytest.skip(str(e), allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 60          # seconds any one command may take before the test fails
PROMPT = "Once upon a time"


@pytest.fixture(scope="module")
def tiny_bin(tmp_path_factory):
    return tiny_model_bin(tmp_path_factory.mktemp("serve") / "tiny.bin")


@pytest.fixture(scope="module")
def endless_bin(tmp_path_factory):
    """A model whose answers fill its whole 8192-token context, to have time to interrupt:
    <bos> and <eos> get all-zero embeddings, so their logit 0 is far below the top ones'.
    Wide enough that a whole answer takes seconds: on a loaded machine the test may send its
    Ctrl-C well after the answer began, and the answer must still be running then."""
    tokenizer = stories_tokenizer()
    model = random_model(dataclasses.replace(
        tiny_config(len(tokenizer)), dim=64, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16,
        hidden_dim=512, max_seq_len=8192))
    embeddings = model.params["tok_emb"]
    embeddings *= 10
    embeddings[[tokenizer.bos_id, tokenizer.eos_id]] = 0
    return write_model_bin(tmp_path_factory.mktemp("serve") / "endless.bin", model, tokenizer, 8)


@pytest.fixture
def board():
    boards = []

    def start(model_path, **options):
        boards.append(HostBoard(model_path, **options))
        return boards[-1]

    yield start
    for b in boards:
        b.close()


def chat_command(port, *args):
    return [sys.executable, "-m", "tinylm", "chat", "--port", port, "--timeout", "10", *args]


def chat(port, *args, stdin=b""):
    """`tinylm chat` run to its end; stdout and stderr decoded as the UTF-8 they are."""
    result = subprocess.run(chat_command(port, *args), cwd=ROOT, input=stdin,
                            capture_output=True, timeout=LIMIT,
                            env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    return result.returncode, result.stdout.decode(), result.stderr.decode()


def run_output(model_path, seed=0) -> str:
    """All that `tinylm run` prints: the prompt, the text, a line end."""
    return PROMPT + run_text(model_path, PROMPT, seed=seed) + "\n"


def start(command, **options):
    """A process that Ctrl-C (SIGINT) reaches even when the tests run in the background."""
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                            **options)


def read_until(stream, done) -> bytes:
    """What a process writes to `stream`, read until done(bytes so far) holds."""
    data = b""
    while not done(data):
        assert select.select([stream], [], [], LIMIT)[0], f"nothing more after {data!r}"
        piece = os.read(stream.fileno(), 4096)
        assert piece, f"the stream ended after {data!r}"
        data += piece
    return data


def streaming(data: bytes) -> bool:
    """The answer has begun: text after the prompt."""
    return len(data) > len(b"go")


# ---- the same text as `tinylm run` ----------------------------------------------------------

@pytest.mark.parametrize("name", ["tiny", "stories260K"])
def test_chat_prints_what_tinylm_run_prints(board, tiny_bin, name):
    if name == "stories260K" and not (SHARED / "models" / "stories260K.bin").exists():
        pytest.skip(f"needs {SHARED}/models/stories260K.bin")
    path = tiny_bin if name == "tiny" else stories_bin(8)
    b = board(path, seed=5)
    status, out, err = chat(b.path, "--prompt", PROMPT)
    assert status == 0, err
    assert out == run_output(path, seed=5)
    assert re.search(r"\[\d+ tokens, \d+\.\d\d tok/s, "
                     r"(end of text|context full|token limit)\]", err)


def test_a_chat_model_answers_each_line_as_run_chat_and_chat_here_do(board, tmp_path):
    """The device loop wraps the line in the model's turn, ends at its end of reply, and
    says chat=1; the client prints the reply alone, as `tinylm chat --model` does here."""
    path, reply = chat_bin_ending_at(tmp_path / "chat.bin", seed=5)
    status, out, err = chat(board(path, seed=5).path, "--prompt", QUESTION)
    assert status == 0, err
    assert out == run_cli("run", path, "--chat", QUESTION, "--seed", 5).stdout
    assert "chat=1" in err and f"[{len(reply)} tokens," in err and "end of text]" in err
    here = subprocess.run([sys.executable, "-m", "tinylm", "chat", "--model", str(path),
                           "--prompt", QUESTION, "--seed", "5"], cwd=ROOT, capture_output=True,
                          timeout=LIMIT)
    assert here.returncode == 0 and here.stdout.decode() == out


def test_tinylm_serve_prints_the_port_to_connect_to(tiny_bin):
    server = start([sys.executable, "-m", "tinylm", "serve", str(tiny_bin), "--seed", "3"])
    try:
        first_line = read_until(server.stdout, lambda data: b"\n" in data).decode()
        port = re.search(r"connect with: tinylm chat --port (\S+)", first_line).group(1)
        assert port.startswith("/dev/")
        status, out, err = chat(port, "--prompt", PROMPT)
        assert status == 0, err
        assert out == run_output(tiny_bin, seed=3)
        assert "board=host" in err
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=LIMIT) == 0


def test_tinylm_serve_refuses_a_file_that_is_no_model(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x7fELF" + bytes(200))
    result = CliRunner().invoke(main, ["serve", str(junk)])
    assert result.exit_code == 1
    assert result.stderr == f"error: {junk}: not a tinylm .bin (bad magic)\n"


def test_an_answer_that_fills_the_context_says_so(board, endless_bin):
    status, out, err = chat(board(endless_bin, context=64).path, "--prompt", "")
    assert status == 0, err
    assert "[63 tokens, " in err and "context full]" in err   # the last slot stays unused


# ---- what cannot be answered ----------------------------------------------------------------

@pytest.mark.parametrize("content, message", [
    (b"\x7fELF" + bytes(200), "no model at {} (found 0x464c457f)"),
    (b"TLMB" + bytes(200), "unsupported format version (this reader knows version 1)"),
])
def test_a_board_without_a_usable_model_says_why(board, tmp_path, content, message):
    path = tmp_path / "model.bin"
    path.write_bytes(content)
    b = board(path)
    status, _, err = chat(b.path, "--prompt", "hi")
    assert status == 1
    assert f"error: {b.path}: {message.format(path)}" in err


def test_an_over_long_prompt_is_refused_and_the_session_goes_on(board, tiny_bin):
    b = board(tiny_bin)
    status, _, err = chat(b.path, "--prompt", "x" * 300)
    assert status == 1
    assert "the prompt is 300 bytes in UTF-8, 45 more than the 255 the board takes" in err
    status, out, err = chat(b.path, stdin=b"x" * 300 + b"\n" + PROMPT.encode() + b"\n")
    assert status == 0, err
    assert "45 more than the 255" in err
    assert out == run_output(tiny_bin)


def test_the_device_drops_an_over_long_line_then_answers_the_next(board, tiny_bin):
    """Below the client, which never sends such a line: the device loop's line reader."""
    import serial
    port = serial.Serial(board(tiny_bin).path, timeout=LIMIT)
    try:
        port.write(b"a" * 300 + b"\r\nhi\n")
        parser, events = protocol.Parser(), []
        while sum(isinstance(e, (protocol.Done, protocol.Error)) for e in events) < 2:
            line = port.read_until(b"\n")
            assert line.endswith(b"\n"), f"no whole line, only {line!r}"
            events += parser.feed(line)
    finally:
        port.close()
    closing = [e for e in events if isinstance(e, (protocol.Done, protocol.Error))]
    assert closing[0] == protocol.Error("line-too-long", "the line had 300 bytes; at most 255 fit")
    assert isinstance(closing[1], protocol.Done)


def test_a_prompt_longer_than_the_context_is_the_boards_error(board, tiny_bin):
    b = board(tiny_bin, context=8)
    status, _, err = chat(b.path, "--prompt", PROMPT + " there was a girl")
    assert status == 1
    assert "the board says: the prompt does not fit in the context of 8 tokens" in err
    status, out, err = chat(b.path, stdin=(PROMPT + " there was a girl\nhi\n").encode())
    assert status == 0, err
    assert "does not fit in the context of 8 tokens" in err and "\nhi" in out


# ---- bytes that are not UTF-8 ---------------------------------------------------------------

def test_a_prompt_that_is_not_utf8_is_refused(board, tiny_bin):
    b = board(tiny_bin)
    status, out, err = chat(b.path, b"--prompt", b"caf\xe9 au lait")     # Latin-1
    assert status == 1
    assert "error: the prompt is not valid UTF-8 (from character 4 on)" in err
    status, out, err = chat(b.path, stdin=b"caf\xe9\nhi\n")
    assert status == 0, err
    assert "not valid UTF-8" in err and out.startswith("hi")     # nothing shown for it


def test_generated_bytes_that_are_not_utf8_are_replaced_and_noted(board, tiny_bin):
    engine = CEngine(tiny_bin)
    prompt_ids = engine.encode(PROMPT, bos=True)
    tokens = [prompt_ids[-1], *engine.generate(prompt_ids, 256, temperature=1.0, top_p=0.9,
                                                seed=7)]
    answer = b"".join(engine.piece(prev, token) for prev, token in zip(tokens, tokens[1:]))
    with pytest.raises(UnicodeDecodeError):      # what the test is about
        answer.decode("utf-8")
    status, out, err = chat(board(tiny_bin, seed=7).path, "--prompt", PROMPT)
    assert status == 0, err
    assert out == PROMPT + answer.decode("utf-8", "replace") + "\n"
    assert "note: the board sent bytes that are not valid UTF-8" in err


# ---- Ctrl-C, and a board that goes away -----------------------------------------------------

def test_ctrl_c_stops_the_answer_on_the_board(board, endless_bin):
    b = board(endless_bin, max_tokens=100_000)
    client = start(chat_command(b.path, "--prompt", "go"))
    read_until(client.stdout, streaming)
    client.send_signal(signal.SIGINT)
    _, err = client.communicate(timeout=LIMIT)
    assert client.returncode == 130
    stopped = re.search(rb"\[(\d+) tokens, \S+ tok/s, stopped\]", err)
    assert stopped and int(stopped.group(1)) < 8192 - 2, err
    status, _, err = chat(b.path, "--prompt", "x" * 256)     # refused by the client, but ...
    assert status == 1 and "connected to" in err            # ... the board greeted it: idle


def test_a_board_that_dies_mid_answer_is_reported(board, endless_bin):
    b = board(endless_bin, max_tokens=100_000)
    client = start(chat_command(b.path, "--prompt", "go"))
    read_until(client.stdout, streaming)
    b.process.kill()
    out, err = client.communicate(timeout=LIMIT)
    assert client.returncode == 1
    assert out.endswith(b"\n")                    # the message is not glued to the text
    assert f"error: lost the connection to {b.path} while waiting for the answer " \
           "(unplugged?)".encode() in err


def test_at_a_terminal_ctrl_c_stops_the_answer_and_ctrl_d_quits(board, endless_bin):
    b = board(endless_bin, max_tokens=100_000)
    keyboard, terminal = os.openpty()       # the client reads its prompts from a terminal
    try:
        client = start(chat_command(b.path), stdin=terminal)
        os.write(keyboard, b"go\n")
        read_until(client.stdout, lambda data: data.startswith(b"> go") and len(data) > 4)
        client.send_signal(signal.SIGINT)
        err = read_until(client.stderr, lambda data: b"stopped]" in data)
        assert b"Type a prompt and press Enter; Ctrl-C stops an answer" in err
        os.write(keyboard, b"\x04")         # Ctrl-D: the end of input
        out, _ = client.communicate(timeout=LIMIT)
        assert client.returncode == 0
        assert out.endswith(b"> \n")        # asked for the next prompt, then left
    finally:
        os.close(keyboard)
        os.close(terminal)
