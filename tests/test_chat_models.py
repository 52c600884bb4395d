"""Chat models on every inference surface: a question wrapped in the model's turn alike in
Python and C, the reply ending at the model's end of reply in the float model, the NumPy engine,
the C runtime, `tinylm generate --chat`, `tinylm run --chat` and `tinylm chat --model`, and
`tinylm eval --chat` scoring the replies alone."""
import json
import math

import numpy as np
import pytest
from binmodels import (
    QUESTION,
    chat_bin_ending_at,
    random_model,
    run_cli,
    stories_tokenizer,
    tiny_config,
    tiny_model_bin,
)
from click.testing import CliRunner

from tinylm.cli import main
from tinylm.export.binformat import read_bin
from tinylm.runtime.c_engine import CEngine
from tinylm.runtime.engine import Engine
from tinylm.runtime.sampler import generate_ids
from tinylm.text.corpus import make_stories
from tinylm.training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from tinylm.training.evaluate import evaluate_chat
from tinylm.training.generate import generate


@pytest.fixture(scope="module")
def ending(tmp_path_factory):
    """(a chat .bin whose reply to QUESTION ends after a few tokens, that reply's ids)"""
    return chat_bin_ending_at(tmp_path_factory.mktemp("chat") / "chat.bin")


@pytest.fixture(scope="module")
def chat_checkpoint(tmp_path_factory):
    tokenizer = stories_tokenizer()
    model = random_model(tiny_config(len(tokenizer)), seed=3)
    directory = tmp_path_factory.mktemp("chat-checkpoint")
    save_checkpoint(Checkpoint(model.config, model.params, tokenizer,
                               chat=tokenizer.chat_turn()), directory)
    return directory, model, tokenizer


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_python_and_c_wrap_a_question_alike(ending, tmp_path):
    path, _ = ending
    tokenizer, turn = stories_tokenizer(), read_bin(path).chat
    engine = CEngine(path)
    for question in [QUESTION, "", "naïve “quotes” 42"]:
        wrapped = engine.encode(question, chat=True)
        assert wrapped == turn.prompt_ids(tokenizer, question)
        assert wrapped == tokenizer.encode_chat(question)
    text_model = CEngine(tiny_model_bin(tmp_path / "text.bin"))     # no turn: <bos> and text
    assert text_model.encode(QUESTION, chat=True) == tokenizer.encode(QUESTION, bos=True)


def test_both_engines_end_the_reply_at_the_models_end_token(ending):
    path, reply = ending
    model = read_bin(path)
    prompt_ids = model.chat.prompt_ids(model.tokenizer, QUESTION)
    sampling = dict(max_tokens=40, temperature=1.0, top_p=0.9, seed=0)
    assert list(CEngine(path).generate(prompt_ids, **sampling)) == reply
    assert list(generate_ids(Engine(model), prompt_ids, **sampling)) == reply


def test_run_chat_prints_only_the_reply(ending):
    path, reply = ending
    tokenizer = stories_tokenizer()
    outputs = {engine: run("run", path, "--chat", QUESTION, "--engine", engine)
               for engine in ("c", "numpy")}
    for result in outputs.values():
        assert result.exit_code == 0, result.output
    assert outputs["c"].stdout == outputs["numpy"].stdout
    assert outputs["c"].stdout.encode("utf-8", "replace") == \
        tokenizer.decode(reply).encode("utf-8", "replace") + b"\n"


def test_chat_here_answers_as_run_does_and_says_why_it_stopped(ending):
    path, reply = ending
    result = run("chat", "--model", path, "--prompt", QUESTION)
    assert result.exit_code == 0, result.output
    assert result.stdout == run("run", path, "--chat", QUESTION).stdout
    assert f"[{len(reply)} tokens," in result.stderr and "end of text]" in result.stderr
    session = CliRunner().invoke(main, ["chat", "--model", str(path)],
                                 input=f"{QUESTION}\n{QUESTION}\n")
    assert session.exit_code == 0 and session.stdout == 2 * result.stdout


def test_a_text_model_refuses_a_question_and_chat_needs_one_source(tmp_path):
    text_bin = tiny_model_bin(tmp_path / "text.bin")
    result = run("run", text_bin, "--chat", QUESTION)
    assert result.exit_code == 1 and "is not a chat model" in result.stderr
    result = run("run", text_bin, "--chat", QUESTION, "--prompt", "Once")
    assert result.exit_code == 2 and "give one" in result.output
    assert run("chat").exit_code == 2
    text_session = run("chat", "--model", text_bin, "--prompt", "Once", "--max-tokens", 3)
    assert text_session.exit_code == 0 and text_session.stdout.startswith("Once")


def test_generate_chat_answers_from_a_checkpoint(chat_checkpoint):
    directory, model, tokenizer = chat_checkpoint
    turn = tokenizer.chat_turn()
    prompt_ids = turn.prompt_ids(tokenizer, QUESTION)
    want = list(generate(model, tokenizer, prompt_ids, max_tokens=20, temperature=0))
    ends_at = want[5]
    cut = list(generate(model, tokenizer, prompt_ids, max_tokens=20, temperature=0,
                        end_id=ends_at))
    assert cut == want[:want.index(ends_at)]
    result = run("generate", directory, "--chat", QUESTION, "--temperature", 0,
                 "--max-tokens", 20)
    assert result.exit_code == 0, result.output
    assert result.stdout == tokenizer.decode(want[:20]) + "\n"


def test_eval_chat_scores_the_replies_alone(chat_checkpoint, tmp_path):
    directory, model, tokenizer = chat_checkpoint
    turn = tokenizer.chat_turn()
    pairs = [("Who found the ball?", "Ben found the ball."), ("Where?", "At the lake.")]
    result = evaluate_chat(model, tokenizer, turn, pairs)
    nats = 0.0
    for prompt, reply in pairs:    # the replies' tokens and their end, after their prompts
        ids = tokenizer.encode_chat(prompt, reply)
        start = len(turn.prompt_ids(tokenizer, prompt))
        z = model.logits(np.array([ids[:-1]]))[0].astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        logprobs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        nats -= sum(logprobs[i - 1, ids[i]] for i in range(start, len(ids)))
    n_bytes = sum(len(reply.encode()) for _, reply in pairs)
    assert result["tokens"] == sum(len(tokenizer.encode(r)) + 1 for _, r in pairs)
    assert result["bpb"] == pytest.approx(nats / math.log(2) / n_bytes, rel=1e-5)
    # a longer question changes nothing that is scored but the reply's context
    assert evaluate_chat(model, tokenizer, turn, [(p * 2, r) for p, r in pairs])["tokens"] == \
        result["tokens"]

    source = tmp_path / "pairs.jsonl"
    source.write_text("".join(json.dumps({"prompt": p, "reply": r}) + "\n" for p, r in pairs))
    scored = json.loads(run_cli("eval", directory, "--chat", source, "--json").stdout)
    assert scored["replies"] == 2 and scored["bpb"] == pytest.approx(result["bpb"])
    run_cli("quantize", directory, "--bits", 8, "-o", tmp_path / "chat.bin")
    quantized = json.loads(run_cli("eval", tmp_path / "chat.bin", "--chat", source,
                                   "--json").stdout)
    assert quantized["tokens"] == result["tokens"]
    assert quantized["bpb"] == pytest.approx(result["bpb"], rel=0.05)

    source.write_text('{"prompt": "no reply"}\n')
    result = run("eval", directory, "--chat", source)
    assert result.exit_code == 1 and "line 1: not a record" in result.stderr
    text_bin = tiny_model_bin(tmp_path / "text.bin")
    result = run("eval", text_bin, "--chat", source)
    assert result.exit_code == 1 and "is not a chat model" in result.stderr
    assert run("eval", directory).exit_code == 2


def test_eval_chat_reads_a_saved_dataset(chat_checkpoint, tmp_path):
    datasets = pytest.importorskip("datasets", reason="datasets not installed")
    directory, model, tokenizer = chat_checkpoint
    pairs = [("Who found the kite?", "Mia found the kite.")]
    datasets.Dataset.from_dict({"prompt": [pairs[0][0]], "reply": [pairs[0][1]]}) \
        .save_to_disk(tmp_path / "pairs")
    scored = json.loads(run_cli("eval", directory, "--chat", tmp_path / "pairs",
                                "--json").stdout)
    assert scored["bpb"] == pytest.approx(
        evaluate_chat(model, tokenizer, tokenizer.chat_turn(), pairs)["bpb"])


def test_train_on_chat_pairs_makes_a_chat_model(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"Who found the {thing}?",
                                         "reply": f"Ben found the {thing}."}) + "\n"
                             for thing in ("ball", "kite", "box", "hat") * 10))
    stories = tmp_path / "stories.txt"
    stories.write_text("\n\n".join(make_stories(20)) + "\n")
    run_cli("train", "--data", stories, "--chat-data", pairs, "--out", tmp_path / "run",
            "--vocab-size", 300, "--dim", 16, "--n-layers", 1, "--n-heads", 2, "--seq-len", 32,
            "--batch-size", 2, "--steps", 2, "--threads", 1)
    checkpoint = load_checkpoint(tmp_path / "run")
    tokenizer = checkpoint.tokenizer
    assert checkpoint.chat == tokenizer.chat_turn()
    tokens = np.fromfile(tmp_path / "run" / "train.uint16", np.uint16).tolist()
    first = tokenizer.encode_chat("Who found the ball?", "Ben found the ball.")
    assert tokens[:len(first)] == first              # as <bos> <|user|> ... <eos>
