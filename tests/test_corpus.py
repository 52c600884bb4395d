"""The demo's built-in questions (tinylm/text/corpus.py): answerable from their own prompt, one
line of the serial protocol each, held-out stories unseen, and answers scored by what they name."""
import re

from tinylm.text.corpus import ANSWERS, answer_in, make_questions

LINE_BYTES = 255        # the longest line the firmware's serve loop reads (docs/protocol.md)


def names(text: str, word: str) -> bool:
    return re.search(rf"\b{word}\b", text) is not None


def test_every_question_is_answered_by_its_own_story_on_one_line():
    questions = make_questions(500, seed=3)
    assert {q.kind for q in questions} == set(ANSWERS)
    for q in questions:
        story, question = q.prompt.rsplit(". ", 1)
        assert names(story, q.answer) and not names(question, q.answer), q
        assert answer_in(q.reply, q.kind) == q.answer, q
        assert "\n" not in q.prompt and len(q.prompt.encode()) < LINE_BYTES, q


def test_no_story_comes_twice_so_the_last_ones_are_held_out():
    questions = make_questions(2300)
    stories = [q.prompt.rsplit(". ", 1)[0] for q in questions]
    assert len(set(stories)) == len(stories)
    assert make_questions(2300) == questions and make_questions(2300, seed=1) != questions


def test_an_answer_is_the_first_word_of_its_kind_the_reply_names():
    assert answer_in("Tom found the ball, not Lily.", "name") == "Tom"
    assert answer_in("Lily found it, then Tom.", "name") == "Lily"
    assert answer_in("Tomorrow, nobody.", "name") is None      # whole words only
    assert answer_in("They wanted to play tag.", "game") == "play tag"
    assert answer_in("", "thing") is None
