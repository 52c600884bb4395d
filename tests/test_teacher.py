"""The teacher package: loading (offline, dtype rules, clear errors), vocabularies as bytes,
and teacher targets in shards that survive a kill and split across processes."""
import types

import numpy as np
import pytest
from tiny_teacher import STORIES260K_HF, gemma_folder, needs_stories260k, offline  # noqa: F401

from tinylm.distillation.targets import done_shards, parse_shard, read_manifest, read_pieces
from tinylm.text.corpus import make_stories

torch = pytest.importorskip("torch", reason="PyTorch not installed: teacher tests skipped")
pytest.importorskip("transformers", reason="transformers not installed: teacher tests skipped")

from teacher.load import _explain, load_teacher, pick_dtype  # noqa: E402
from teacher.sources import Record, builtin_prompts, plan_records  # noqa: E402
from teacher.targets import TargetSettings, make_targets  # noqa: E402
from teacher.vocab import teacher_vocab, tinylm_tokenizer  # noqa: E402


@pytest.fixture(scope="module")
def gemma(gemma_folder):
    return load_teacher(str(gemma_folder))


# ---- loading ----------------------------------------------------------------------------------

def test_tiny_gemma_loads_from_its_folder_offline(gemma):
    config = gemma.model.config
    assert type(gemma.model).__name__ == "Gemma3ForCausalLM"
    assert config.query_pre_attn_scalar == config.head_dim
    assert config.layer_types == ["sliding_attention", "full_attention"]
    assert gemma.model.dtype == torch.float32 and gemma.device.type == "cpu"


def test_gemma_chat_template(gemma):
    text = gemma.tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}],
                                               tokenize=False, add_generation_prompt=True)
    assert text == "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"


def test_dtype_rules():
    assert pick_dtype(torch.device("cpu")) == torch.float32
    assert pick_dtype(torch.device("cpu"), "bfloat16") == torch.bfloat16
    with pytest.raises(ValueError, match="float16 is not allowed"):
        pick_dtype(torch.device("cpu"), "float16")


def test_offline_hub_id_says_pass_a_local_folder():
    with pytest.raises(OSError, match="Pass a local folder"):
        load_teacher("google/gemma-3-1b-it")


def test_missing_folder_and_gated_model_messages(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_teacher(str(tmp_path / "nowhere"))
    from huggingface_hub.errors import GatedRepoError
    response = types.SimpleNamespace(headers={}, request=None)
    try:
        try:
            raise GatedRepoError("403 Client Error", response=response)
        except GatedRepoError as cause:
            raise OSError("You are trying to access a gated repo.") from cause
    except OSError as error:
        message = _explain(error, "google/gemma-3-1b-it")
    assert "accept its licence" in message and "hf auth login" in message


# ---- vocabularies -----------------------------------------------------------------------------

def check_vocabulary(tokenizer, n_ids, texts):
    vocab = teacher_vocab(tokenizer, n_ids)
    converted = tinylm_tokenizer(tokenizer)
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        joined = b"".join(vocab.token_bytes[i] for i in ids)
        assert joined == (b" " if vocab.dummy_prefix else b"") + text.encode()
        assert converted.encode(text) == ids
    return vocab


def test_tiny_gemma_vocabulary(gemma):
    vocab = check_vocabulary(gemma.tokenizer, len(gemma.tokenizer),
                             make_stories(20, seed=9) + ["naïve — ünïcode ✓\n\nlines"])
    assert not vocab.dummy_prefix
    assert set(vocab.end_ids) >= {gemma.tokenizer.eos_token_id,
                                  gemma.tokenizer.convert_tokens_to_ids("<end_of_turn>")}


@needs_stories260k
def test_stories260k_vocabulary():
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(STORIES260K_HF)
    vocab = check_vocabulary(tokenizer, 512, make_stories(20) + ["Tabs\tand\nnewlines é"])
    assert vocab.dummy_prefix


# ---- targets ----------------------------------------------------------------------------------

SETTINGS = TargetSettings(k=5, shard_size=3, max_new_tokens=12, batch_size=2, seed=1)


def corpus():
    return ([Record("text", s) for s in make_stories(5, seed=3)] +
            [Record("chat", p) for p in builtin_prompts(3, seed=1)] + [Record("free")] * 2)


def pieces_of(directory):
    return [(p.kind, p.record, p.prefix, p.text, p.prompt, p.tokens.tolist(),
             p.topk_ids.tolist(), p.topk_logprobs.tolist()) for p in read_pieces(directory)]


@pytest.fixture(scope="module")
def complete(gemma, tmp_path_factory):
    directory = tmp_path_factory.mktemp("complete")
    summary = make_targets(gemma, corpus(), directory, SETTINGS)
    assert summary["shards_written"] == 4 and summary["shards_missing"] == 0
    return pieces_of(directory)


def test_targets_hold_every_record_once_with_k_predictions_per_token(complete):
    records = corpus()
    assert [p[1] for p in complete] == list(range(len(records)))   # short texts: one piece each
    for (kind, index, prefix, text, prompt, tokens, ids, logprobs), record in zip(complete,
                                                                                  records):
        assert kind == record.kind and len(ids) == len(tokens) + 1
        assert np.all(np.diff(logprobs, axis=1) <= 0)              # top k, most likely first
        if kind == "text":
            assert text == record.text.encode()
        if kind == "chat":
            assert prompt == record.text


def test_killed_after_a_shard_resumes_with_nothing_lost_or_doubled(gemma, complete, tmp_path):
    def kill_after_second(index):
        if len(done_shards(tmp_path)) == 2:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        make_targets(gemma, corpus(), tmp_path, SETTINGS, on_shard=kill_after_second)
    assert done_shards(tmp_path) == {0, 1}
    assert not list(tmp_path.glob(".*tmp"))                       # no half-written shard
    summary = make_targets(gemma, corpus(), tmp_path, SETTINGS)
    assert summary["shards_written"] == 2                         # only the missing ones
    assert pieces_of(tmp_path) == complete


def test_killed_inside_a_shard_leaves_no_partial_file(gemma, tmp_path, monkeypatch):
    import teacher.targets
    real = teacher.targets.write_shard

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    def dies_while_writing(directory, index, pieces):
        if index == 1:   # the second shard dies half-way through writing its file
            monkeypatch.setattr(np, "savez", killed)
        return real(directory, index, pieces)
    monkeypatch.setattr(teacher.targets, "write_shard", dies_while_writing)
    with pytest.raises(KeyboardInterrupt):
        make_targets(gemma, corpus(), tmp_path, SETTINGS)
    assert done_shards(tmp_path) == {0} and not list(tmp_path.glob(".*tmp"))


def test_shards_split_across_processes_merge_through_the_manifest(gemma, complete, tmp_path):
    first = make_targets(gemma, corpus(), tmp_path, SETTINGS, shard=parse_shard("1/2"))
    assert first["shards_written"] == 2 and first["shards_missing"] == 2
    assert done_shards(tmp_path) == {0, 2}
    make_targets(gemma, corpus(), tmp_path, SETTINGS, shard=parse_shard("2/2"))
    assert pieces_of(tmp_path) == complete
    assert read_manifest(tmp_path)["n_shards"] == 4


def test_other_settings_in_the_same_directory_are_refused(gemma, tmp_path):
    make_targets(gemma, corpus()[:2], tmp_path, SETTINGS)
    with pytest.raises(ValueError, match="other settings"):
        make_targets(gemma, corpus()[:2], tmp_path, TargetSettings(k=3, shard_size=3))
    with pytest.raises(ValueError, match="K/N"):
        parse_shard("2")


@needs_stories260k
def test_story_teacher_writes_and_reads(tmp_path):
    teacher = load_teacher(str(STORIES260K_HF))
    records = plan_records(free=2) + [Record("text", "Once upon a time, there was a cat.")]
    with pytest.raises(ValueError, match="no chat template"):
        make_targets(teacher, [Record("chat", "Hi")], tmp_path / "chat", SETTINGS)
    make_targets(teacher, records, tmp_path, TargetSettings(k=4, max_new_tokens=30))
    free, _, text = read_pieces(tmp_path)
    assert free.prefix == 1 and free.text and not free.text.startswith(b" ")
    assert text.text == b"Once upon a time, there was a cat." and text.prefix == 1


def test_a_datasets_source_from_local_files(tmp_path):
    pytest.importorskip("datasets", reason="datasets not installed")
    path = tmp_path / "rows.jsonl"
    path.write_text('{"text": "First story."}\n{"text": "  "}\n{"text": "Second one."}\n')
    records = plan_records(dataset=str(path), synthetic=1, free=1)
    assert [r.kind for r in records] == ["text", "text", "chat", "free"]
    assert records[1].text == "Second one."


def test_chat_records_with_replies_are_read_not_written(gemma, tmp_path):
    """A source with prompt and reply columns gives chat records whose reply the teacher
    reads in its chat template: the piece holds that reply, and its predictions."""
    pytest.importorskip("datasets", reason="datasets not installed")
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"prompt": "Who found the ball?", "reply": "Ben found the ball."}\n'
                    '{"prompt": "Where did Mia go?", "reply": "Mia went to the lake."}\n')
    records = plan_records(dataset=str(path))
    assert records == [Record("chat", "Who found the ball?", "Ben found the ball."),
                       Record("chat", "Where did Mia go?", "Mia went to the lake.")]
    make_targets(gemma, records, tmp_path / "targets", SETTINGS)
    pieces = list(read_pieces(tmp_path / "targets"))
    assert [(p.prompt, p.text) for p in pieces] == [
        ("Who found the ball?", b"Ben found the ball."), ("Where did Mia go?",
                                                          b"Mia went to the lake.")]
    ids = gemma.tokenizer("Ben found the ball.", add_special_tokens=False)["input_ids"]
    assert pieces[0].tokens.tolist() == ids and len(pieces[0].topk_ids) == len(ids) + 1


@needs_stories260k
def test_a_teacher_scored_with_a_shorter_context():
    """Windows of `context` tokens lose what came before them: a long story scores worse; a
    context at least the teacher's own changes nothing."""
    teacher = load_teacher(str(STORIES260K_HF))
    story = ["Once upon a time, there was a little girl named Lily. She liked to play in the "
             "park with her dog. " * 12]
    own = teacher.bits_per_byte(story)
    assert teacher.bits_per_byte(story, context=teacher.max_len + 100) == own
    assert teacher.bits_per_byte(story, context=33) > own + 0.1
