"""A built-in training text: short children's stories written from templates, and questions
about them.

The demo needs text that every fresh install has, without downloads. These stories follow a
few fixed plots with names, animals, places and things drawn at random, so a tiny model has
something it can visibly learn within minutes: spelling, grammar, and keeping a character's
name and pronoun through a story. The same seed always gives the same stories.

The stories also answer questions ("Who found the ball?"): make_questions writes single-turn
chat records whose prompt is a short story (a plot's first sentences, under 255 bytes with its
question: one line of the serial protocol) and a question about it, and whose reply names one
of its characters, animals, places, things, feelings or games. Whether a reply is right is a
matter of which of those words it names first (answer_in).
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

GIRL, BOY = ("girl", "she", "her"), ("boy", "he", "his")
CHARACTERS = [("Lily", *GIRL), ("Tom", *BOY), ("Mia", *GIRL), ("Ben", *BOY), ("Sue", *GIRL),
              ("Max", *BOY), ("Anna", *GIRL), ("Sam", *BOY)]
ANIMALS = ["cat", "dog", "bird", "frog", "bunny", "duck", "fox", "bear"]
PLACES = ["the park", "the garden", "the forest", "the beach", "the farm", "the lake"]
THINGS = ["ball", "kite", "box", "hat", "boat", "drum", "shell", "stone"]
COLOURS = ["red", "blue", "green", "yellow", "big", "little", "shiny", "soft"]
FEELINGS = ["sad", "bored", "cold", "grumpy"]
GAMES = ["run", "jump", "sing", "dance", "play tag", "build a tower"]
# What an answer can name, by kind: the reply's first word of its kind is its answer.
ANSWERS = {"name": [c[0] for c in CHARACTERS], "animal": ANIMALS, "place": PLACES,
           "thing": THINGS, "feeling": FEELINGS, "game": GAMES}


@dataclass(frozen=True)
class Question:
    """A question about a story, as a chat record: the prompt is the story and the question."""
    prompt: str
    reply: str      # the answer, as a sentence
    answer: str     # what the reply must name (one of ANSWERS[kind])
    kind: str


def story(rng: random.Random) -> str:
    opening, plot, _, _ = story_parts(rng)
    return " ".join([opening, *plot])


def story_parts(rng: random.Random) -> tuple[str, list[str], list[str], list[tuple]]:
    """A story's opening and plot sentences; the questions about its plot, as (question,
    reply, answer, kind); and the short story they need: the plot's first few sentences."""
    name, kind, he, his = rng.choice(CHARACTERS)
    friend, _, friend_he, _ = rng.choice([c for c in CHARACTERS if c[0] != name])
    animal, place, thing = rng.choice(ANIMALS), rng.choice(PLACES), rng.choice(THINGS)
    colour, game = rng.choice(COLOURS), rng.choice(GAMES)
    He = he.capitalize()
    opening = rng.choice([
        f"Once upon a time, there was a little {kind} named {name}.",
        f"One day, a little {kind} named {name} woke up early.",
        f"{name} was a little {kind} who loved to {game}.",
    ])
    feeling = rng.choice(FEELINGS)
    plot, told, questions = rng.choice([
        ([f"{He} went to {place} and saw a {colour} {thing} under a tree.",
          f"{name} wanted to play with the {thing}, but it belonged to a {animal}.",
          f"\"Can I play with your {thing}?\" {name} asked.",
          f"The {animal} said, \"Yes, let's play together!\"",
          f"From that day on, {name} and the {animal} were best friends."], 2,
         [(f"Where did {name} go?", f"{name} went to {place}.", place, "place"),
          (f"What did {name} see under the tree?", f"{name} saw a {colour} {thing}.", thing,
           "thing"),
          (f"Who did the {thing} belong to?", f"The {thing} belonged to a {animal}.", animal,
           "animal")]),
        ([f"{He} met a {animal} at {place}.",
          f"The {animal} was sad because it lost its {colour} {thing}.",
          f"{name} and {his} friend {friend} looked everywhere for the {thing}.",
          f"At last, {friend} found it and {friend_he} gave it back to the {animal}.",
          f"The {animal} said, \"Thank you!\" and {name} felt proud."], 4,
         [(f"Who found the {thing}?", f"{friend} found the {thing}.", friend, "name"),
          (f"What did the {animal} lose?", f"The {animal} lost its {colour} {thing}.", thing,
           "thing"),
          (f"Where did {name} meet the {animal}?", f"{name} met the {animal} at {place}.",
           place, "place")]),
        ([f"{He} went to {place} with {his} friend {friend}.",
          f"They wanted to {game}, but it started to rain.",
          f"{name} felt {feeling}.",
          f"Then the sun came out and they could {game} again.",
          f"At the end of the day, {name} went home and told {his} mom about {place}."], 3,
         [(f"Who went to {place} with {name}?", f"{friend} went to {place} with {name}.",
           friend, "name"),
          (f"How did {name} feel when it rained?", f"{name} felt {feeling}.", feeling,
           "feeling"),
          (f"What did {name} and {friend} want to do?", f"They wanted to {game}.", game,
           "game")]),
    ])
    # The plot's first sentence names its hero, so that its start is a story of its own.
    return opening, plot, [name + plot[0][len(He):], *plot[1:told]], questions


def make_stories(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [story(rng) for _ in range(n)]


def make_questions(n: int, seed: int = 0) -> list[Question]:
    """n questions, each about a short story of its own (the start of a story's plot, a few
    sentences): prompt and question on one line, as a person types it into `tinylm chat`. No
    story comes twice, so the last questions can be held out: no model trained on the first
    ones has read their stories."""
    rng = random.Random(f"questions {seed}")
    questions, told = [], set()
    while len(questions) < n:
        _, _, short, asked = story_parts(rng)
        question, reply, answer, kind = rng.choice(asked)
        if " ".join(short) not in told:
            told.add(" ".join(short))
            questions.append(Question(" ".join([*short, question]), reply, answer, kind))
    return questions


def answer_in(reply: str, kind: str) -> str | None:
    """The first word of ANSWERS[kind] that `reply` names, or None."""
    found = [(m.start(), word) for word in ANSWERS[kind]
             for m in [re.search(rf"\b{re.escape(word)}\b", reply)] if m]
    return min(found)[1] if found else None
