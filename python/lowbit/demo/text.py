"""Offline English sentences for calibrating and distilling sentence encoders (MiniLM): the
docstrings of the Python standard library, and everyday sentences from a small template grammar.
Also random sequences of a tokenizer's whole words (vocabulary coverage for calibration).
Nothing is downloaded. No source contains :data:`lowbit.demo.models.SENTENCES` (the held-out
evaluation sentences): generated sentences sharing four consecutive words with one are dropped.
"""

from __future__ import annotations

import importlib
import random
import re
import warnings
from collections.abc import Iterable

__all__ = ["docstring_sentences", "everyday_sentences", "sentence_corpus", "word_sequences"]

_MODULES = ["json", "collections", "argparse", "email", "http.client", "logging", "unittest", "pathlib",
            "subprocess", "threading", "asyncio", "decimal", "statistics", "random", "itertools", "functools",
            "datetime", "urllib.request", "csv", "sqlite3", "textwrap", "string", "os", "shutil", "tarfile",
            "zipfile", "socket", "ssl", "inspect", "dataclasses", "enum", "heapq", "calendar", "difflib", "pprint",
            "tempfile", "uuid", "hashlib", "pickle", "copy", "io", "glob", "configparser", "gettext", "locale",
            "smtplib", "imaplib", "ftplib", "sched", "queue", "weakref", "abc", "numbers", "fractions", "math",
            "contextlib", "warnings", "traceback", "codecs", "platform", "signal"]


def docstring_sentences() -> list[str]:
    """English sentences (30-200 characters, mostly letters) from the docstrings of about sixty
    standard-library modules and their public members, in a fixed order, duplicates removed
    (about 2,600 on CPython 3.11). Technical prose: pair it with :func:`everyday_sentences` for
    encoders evaluated on everyday text."""
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in _MODULES:
            mod = importlib.import_module(name)
            for o in [mod] + [getattr(mod, a) for a in dir(mod) if not a.startswith("_")]:
                d = getattr(o, "__doc__", None)
                if not isinstance(d, str):
                    continue
                for s in re.split(r"(?<=[.!?])\s+", " ".join(d.split())):
                    if 30 <= len(s) <= 200 and s[0].isupper() and sum(c.isalpha() for c in s) > 0.7 * len(s):
                        out.append(s)
    return list(dict.fromkeys(out))


_W = {
    "person": ["my sister", "the old man", "a young girl", "our neighbour", "the teacher", "a tourist", "the doctor",
               "my grandfather", "the children", "a group of students", "the chef", "his wife", "the driver",
               "a nurse", "the farmer", "my best friend", "the manager", "two boys", "an elderly couple", "the baby"],
    "verb_past": ["bought", "painted", "cleaned", "found", "lost", "carried", "repaired", "ordered", "cooked",
                  "sold", "borrowed", "washed", "opened", "wrapped", "dropped", "forgot", "delivered", "photographed"],
    "verb_base": ["buy", "paint", "clean", "find", "carry", "repair", "order", "cook", "sell", "borrow", "wash",
                  "open", "wrap", "deliver", "visit", "book", "cancel", "replace"],
    "thing": ["a red bicycle", "the kitchen table", "a pair of shoes", "some fresh vegetables", "an umbrella",
              "the front door", "a birthday cake", "the old car", "a cup of coffee", "a bunch of flowers",
              "the laptop", "a wooden chair", "the winter coat", "a bag of apples", "the garden fence",
              "a new phone", "the map", "a box of books", "the broken window", "a bottle of milk"],
    "place": ["at the market", "in the garden", "near the station", "at the office", "in the village",
              "by the river", "at the supermarket", "in the city centre", "at the airport", "on the beach",
              "in the library", "at the hospital", "behind the school", "in the museum", "on the bus"],
    "time": ["yesterday", "last night", "this morning", "on Sunday", "every weekend", "after lunch",
             "before dinner", "last summer", "two weeks ago", "early in the morning", "during the holidays",
             "at midnight", "on Monday afternoon", "later this year"],
    "animal": ["the dog", "a small bird", "the horse", "two ducks", "the old cat", "a fox", "the cows",
               "a squirrel", "the puppy", "a rabbit"],
    "animal_act": ["is sleeping", "runs across the field", "is chasing a ball", "is eating grass",
                   "waits by the gate", "jumps over the fence", "is drinking water", "hides under the car"],
    "org": ["The government", "The city council", "A large software company", "The football club",
            "The national museum", "The university", "A local charity", "The airline", "The hospital",
            "The energy company"],
    "announce": ["announced", "confirmed", "denied", "postponed", "approved", "criticised", "celebrated"],
    "news": ["a new budget for schools", "plans to build a bridge", "the opening of a new park",
             "higher prices for public transport", "a merger with its rival", "a programme to plant trees",
             "new rules for electric scooters", "the results of the election", "a delay to the project"],
    "weather": ["Strong winds", "Snow", "Thunderstorms", "Sunny weather", "Freezing temperatures", "Fog",
                "A heatwave", "Light showers"],
    "region": ["in the south", "along the coast", "in the mountains", "across the region", "over the capital",
               "in the eastern valleys"],
    "media": ["book", "concert", "play", "restaurant", "hotel", "album", "television series", "exhibition",
              "museum tour", "football match"],
    "adj_good": ["wonderful", "excellent", "surprisingly good", "fantastic", "beautiful", "delightful"],
    "adj_bad": ["disappointing", "far too long", "boring", "overpriced", "quite noisy", "badly organised"],
    "part": ["the food", "the music", "the ending", "the service", "the acting", "the view", "the staff",
             "the first half"],
    "topic": ["the immune system", "volcanoes", "the moon", "honey bees", "ocean currents", "the human heart",
              "earthquakes", "rainforests", "glaciers", "electricity"],
    "fact": ["protects the body from infections", "form where tectonic plates meet", "controls the tides",
             "pollinate many of the crops we eat", "move heat around the planet", "pumps blood through the body",
             "release energy stored in the crust", "produce a large share of the oxygen we breathe",
             "store most of the fresh water on Earth", "flows through wires as moving electrons"],
    "task": ["change the language of my phone", "cancel my subscription", "renew my passport",
             "book a table for four people", "return an item I bought online", "open a bank account",
             "find the nearest pharmacy", "update my home address", "get a refund for my ticket",
             "connect the printer to the network"],
    "sport": ["The home team", "The young tennis player", "Our basketball team", "The cyclist", "The runner",
              "The visiting side"],
    "sport_act": ["lost the final in extra time", "broke the national record", "scored in the last minute",
                  "was injured during training", "qualified for the world cup", "finished in second place"],
    "feeling": ["tired", "happy", "nervous", "hungry", "excited", "worried", "relieved", "bored"],
    "reason": ["the exam is tomorrow", "the holidays have started", "the bus was late again",
               "she got the job", "it has been raining all week", "the house is finally quiet"],
    "doc": ["the invoice", "the signed contract", "your travel plans", "the meeting notes", "the draft",
            "the updated schedule", "the photos from the trip"],
    "deadline": ["the end of the day", "next Tuesday", "the weekend", "noon tomorrow", "the next meeting"],
}

_FRAMES = [
    "{Person} {verb_past} {thing} {place} {time}.",
    "{Time}, {person} will {verb_base} {thing} {place}.",
    "{Animal} {animal_act} {place}.",
    "{org} {announce} {news} {time}.",
    "{weather} is expected {region} {time}.",
    "The {media} was {adj_good}, but {part} was {adj_bad}.",
    "I thought the {media} was {adj_bad}, although {part} was {adj_good}.",
    "Scientists say that {topic} {fact}.",
    "{Topic} {fact}.",
    "How can I {task}?",
    "Could you tell me how to {task}?",
    "{sport} {sport_act} {time}.",
    "{Person} felt {feeling} because {reason}.",
    "Please send me {doc} before {deadline}.",
    "Can {person} {verb_base} {thing} {time}?",
    "We met {person} {place} {time} and talked about {topic}.",
]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _grams(s: str, n: int = 4) -> set[tuple[str, ...]]:
    w = re.findall(r"[a-z']+", s.lower())
    return {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}


def everyday_sentences(n: int = 2000, seed: int = 0) -> list[str]:
    """``n`` distinct everyday English sentences (shopping, weather, news, reviews, questions,
    science facts, sport, requests) from a template grammar, reproducible from ``seed``. None shares
    four consecutive words with :data:`lowbit.demo.models.SENTENCES` (the evaluation set).

    Example:
        >>> from lowbit.demo.text import everyday_sentences
        >>> len(everyday_sentences(50)), everyday_sentences(50) == everyday_sentences(50)
        (50, True)
    """
    from .models import SENTENCES

    banned = set().union(*(_grams(s) for s in SENTENCES))
    rng = random.Random(seed)
    out: dict[str, None] = {}
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 50 * n:
            raise ValueError(f"n: the grammar gives fewer than {n} distinct sentences")
        frame = rng.choice(_FRAMES)
        fill = {}
        for key, words in _W.items():
            fill[key] = rng.choice(words)
            fill[_cap(key)] = _cap(fill[key])
        s = frame.format(**fill)
        if not (_grams(s) & banned):
            out[s] = None
    return list(out)


def sentence_corpus(n_everyday: int = 2000, seed: int = 0) -> list[str]:
    """:func:`docstring_sentences` and :func:`everyday_sentences` interleaved in a fixed shuffled order."""
    s = docstring_sentences() + everyday_sentences(n_everyday, seed)
    random.Random(seed).shuffle(s)
    return s


def word_sequences(vocabulary: Iterable[str], n: int = 1024, seed: int = 0, length: tuple[int, int] = (6, 18)) -> list[str]:
    """``n`` sequences of ``length[0]..length[1]`` words drawn uniformly (seeded) from the lowercase
    alphabetic entries of ``vocabulary`` longer than two letters (e.g. ``tokenizer.get_vocab()``:
    whole words, not word pieces). Not language: calibration coverage of the vocabulary that template
    and docstring text never reach (on MiniLM, block reconstruction with 1024 of them added to 2048
    corpus sentences raised the worst cosine on the evaluation sentences from 0.86 to 0.88). Sequences
    sharing four consecutive words with :data:`lowbit.demo.models.SENTENCES` are dropped.

    Example:
        >>> from lowbit.demo.text import word_sequences
        >>> seqs = word_sequences(["apple", "river", "cloud", "##ing", "a", "Stone"], n=3, length=(2, 3))
        >>> len(seqs), set(" ".join(seqs).split()) <= {"apple", "river", "cloud"}
        (3, True)
    """
    from .models import SENTENCES

    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n: expected an int >= 0, got {n!r}")
    if not (isinstance(length, tuple) and len(length) == 2 and all(isinstance(x, int) for x in length)
            and 1 <= length[0] <= length[1]):
        raise ValueError(f"length: expected (min, max) ints with 1 <= min <= max, got {length!r}")
    words = sorted({w for w in vocabulary if isinstance(w, str) and w.isalpha() and w.islower() and len(w) > 2})
    if not words:
        raise ValueError("vocabulary: no lowercase alphabetic word longer than two letters")
    banned = set().union(*(_grams(s) for s in SENTENCES))
    rng = random.Random(seed)
    out: list[str] = []
    for _ in range(50 * n + 100):
        if len(out) == n:
            break
        s = " ".join(rng.choice(words) for _ in range(rng.randint(*length)))
        if not (_grams(s) & banned):
            out.append(s)
    if len(out) < n:
        raise ValueError("vocabulary: too few words to draw sequences apart from the evaluation sentences")
    return out
