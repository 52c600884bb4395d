"""A built-in training text: short children's stories written from templates.

The demo needs text that every fresh install has, without downloads. These stories follow a
few fixed plots with names, animals, places and things drawn at random, so a tiny model has
something it can visibly learn within minutes: spelling, grammar, and keeping a character's
name and pronoun through a story. The same seed always gives the same stories.
"""
from __future__ import annotations

import random

GIRL, BOY = ("girl", "she", "her"), ("boy", "he", "his")
CHARACTERS = [("Lily", *GIRL), ("Tom", *BOY), ("Mia", *GIRL), ("Ben", *BOY), ("Sue", *GIRL),
              ("Max", *BOY), ("Anna", *GIRL), ("Sam", *BOY)]
ANIMALS = ["cat", "dog", "bird", "frog", "bunny", "duck", "fox", "bear"]
PLACES = ["the park", "the garden", "the forest", "the beach", "the farm", "the lake"]
THINGS = ["ball", "kite", "box", "hat", "boat", "drum", "shell", "stone"]
COLOURS = ["red", "blue", "green", "yellow", "big", "little", "shiny", "soft"]
FEELINGS = ["sad", "bored", "cold", "grumpy"]
GAMES = ["run", "jump", "sing", "dance", "play tag", "build a tower"]


def story(rng: random.Random) -> str:
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
    plot = rng.choice([
        [f"{He} went to {place} and saw a {colour} {thing} under a tree.",
         f"{name} wanted to play with the {thing}, but it belonged to a {animal}.",
         f"\"Can I play with your {thing}?\" {name} asked.",
         f"The {animal} said, \"Yes, let's play together!\"",
         f"From that day on, {name} and the {animal} were best friends."],
        [f"{He} met a {animal} at {place}.",
         f"The {animal} was sad because it lost its {colour} {thing}.",
         f"{name} and {his} friend {friend} looked everywhere for the {thing}.",
         f"At last, {friend} found it and {friend_he} gave it back to the {animal}.",
         f"The {animal} said, \"Thank you!\" and {name} felt proud."],
        [f"{He} went to {place} with {his} friend {friend}.",
         f"They wanted to {game}, but it started to rain.",
         f"{name} felt {rng.choice(FEELINGS)}.",
         f"Then the sun came out and they could {game} again.",
         f"At the end of the day, {name} went home and told {his} mom about {place}."],
    ])
    return " ".join([opening, *plot])


def make_stories(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [story(rng) for _ in range(n)]
