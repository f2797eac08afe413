"""Tweet text analysis for ingestion: cleaning, hashtags, mentions, language, sentiment.

Everything here is pure and cheap: it runs once per tweet on the ingestion hot path.

* Language: the script of the letters decides for non-Latin scripts; Latin text is
  voted on by stopwords of the languages most tweeted in. A full n-gram detector
  (e.g. `langdetect`) costs milliseconds per tweet, a hundred times this, and is no
  better on 10-word tweets.
* Sentiment: VADER's lexicon (the `vaderSentiment` package's, valences -4..4) with its
  main rules: negation in the three preceding words, booster words, "but" shifting the
  weight to the second clause, and VADER's normalisation `s / sqrt(s^2 + 15)`. The full
  `SentimentIntensityAnalyzer` spends most of its time on rules that hardly matter for
  short tweets (emoji, idioms, punctuation emphasis); see docs/services.md for the cost
  of each and how closely they agree.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from functools import cache

MAX_HASHTAGS = 50
MAX_MENTIONS = 50
MAX_HASHTAG_CHARS = 100

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\ufeff]")
# A hashtag starts after a non-word character (not inside "a#b" or "&#39;"); Twitter
# does not treat all-digit tags as hashtags.
_HASHTAG = re.compile(r"(?<![\w&#])#(\w+)")
# A handle is 1-15 of [A-Za-z0-9_] not followed by more handle characters or '@'.
_MENTION = re.compile(r"(?<![\w@])@([A-Za-z0-9_]{1,15})(?![\w@])")
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
_VALID_TAG = re.compile(r"\w{1,100}")


def clean_text(text: str) -> str:
    """NFC-normalised, control and zero-width characters removed, whitespace collapsed."""
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
        text = _CONTROL.sub(" ", text)
    elif not text.isprintable():
        text = _CONTROL.sub(" ", text)
    return " ".join(text.split())


def extract_hashtags(text: str) -> list[str]:
    """Case-folded, without '#', first occurrence order, duplicates dropped."""
    if "#" not in text:
        return []
    tags: list[str] = []
    for match in _HASHTAG.finditer(text):
        tag = match.group(1)
        if tag.isdigit() or len(tag) > MAX_HASHTAG_CHARS:
            continue
        tag = tag.casefold()
        # Case folding can lengthen a tag ("ß" -> "ss") or change its characters.
        if tag not in tags and _VALID_TAG.fullmatch(tag):
            tags.append(tag)
            if len(tags) == MAX_HASHTAGS:
                break
    return tags


def extract_mentions(text: str) -> list[str]:
    """Handles without '@', lower case (handles are case-insensitive), deduplicated."""
    if "@" not in text:
        return []
    handles: list[str] = []
    for match in _MENTION.finditer(text):
        handle = match.group(1).lower()
        if handle not in handles:
            handles.append(handle)
            if len(handles) == MAX_MENTIONS:
                break
    return handles


# ---- language ------------------------------------------------------------------------------


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_STOPWORDS: dict[str, frozenset[str]] = {
    "en": _words(
        "the a an and or but is are was were be been i you he she it we they my your his her"
        " our their this that these those to of in on at for with about from by not no so just"
        " now here there what why how when who really very too all some can will would do does"
        " did have has had me us them am if then than out up"
    ),
    "es": _words(
        "el la los las un una y o pero es son era fue yo tu usted nosotros ellos mi su este"
        " esta eso que de en por para con sin muy mas ya hoy aqui donde como cuando porque"
        " hay del al lo le se"
    ),
    "fr": _words(
        "le la les un une et ou mais est sont etait je tu il elle nous vous ils mon ton son"
        " ce cette que qui de du des en dans pour avec sans tres plus aujourd hui ici ou"
        " comme quand pourquoi au aux ne pas"
    ),
    "de": _words(
        "der die das ein eine und oder aber ist sind war ich du er sie es wir ihr mein dein"
        " sein dieser diese dass von zu mit ohne sehr mehr heute hier wo wie wann warum nicht"
        " auf fur den dem des im"
    ),
    "pt": _words(
        "o a os as um uma e ou mas sao era foi eu voce ele ela nos eles meu seu este esta isso"
        " que de em por para com sem muito mais hoje aqui onde como quando porque nao do da"
        " dos das no na"
    ),
    "it": _words(
        "il lo la i gli le un una e o ma sono era io tu lui lei noi voi loro mio tuo suo questo"
        " questa che di in per con senza molto piu oggi qui dove come quando perche non del"
        " della al"
    ),
    "nl": _words(
        "de het een en of maar is zijn was ik jij hij zij wij mijn jouw dit dat die van in op"
        " voor met zonder heel meer vandaag hier waar hoe wanneer waarom niet"
    ),
}
# Words shared by several languages ("de", "a", "in") still vote for each; ties go to
# the order below, most tweeted first.
_LANGUAGE_ORDER = ("en", "es", "pt", "fr", "de", "it", "nl")
_STOPWORD_VOTES: dict[str, tuple[str, ...]] = {}
for _language in _LANGUAGE_ORDER:
    for _word in _STOPWORDS[_language]:
        _STOPWORD_VOTES[_word] = (*_STOPWORD_VOTES.get(_word, ()), _language)

# (first code point, last code point, language) for scripts that name a language well
# enough; Han alone is taken as Chinese, kana as Japanese.
_SCRIPT_RANGES: tuple[tuple[int, int, str], ...] = (
    (0x0370, 0x03FF, "el"),
    (0x0400, 0x04FF, "ru"),
    (0x0590, 0x05FF, "he"),
    (0x0600, 0x06FF, "ar"),
    (0x0900, 0x097F, "hi"),
    (0x0E00, 0x0E7F, "th"),
    (0x3040, 0x30FF, "ja"),
    (0xAC00, 0xD7AF, "ko"),
    (0x4E00, 0x9FFF, "zh"),
)
UNDETERMINED = "und"


def detect_language(text: str) -> str:
    """ISO 639-1 code, or "und" when the text gives no signal."""
    if not text.isascii():
        script = _script_language(text)
        if script is not None:
            return script
    votes: dict[str, int] = {}
    for word in _WORD.findall(text.lower()):
        for language in _STOPWORD_VOTES.get(word, ()):
            votes[language] = votes.get(language, 0) + 1
    if not votes:
        return UNDETERMINED
    best = max(votes.values())
    return next(language for language in _LANGUAGE_ORDER if votes.get(language) == best)


def _script_language(text: str) -> str | None:
    counts: dict[str, int] = {}
    letters = 0
    for char in text:
        if not char.isalpha():
            continue
        letters += 1
        code = ord(char)
        if code < 0x0370:
            continue
        for low, high, language in _SCRIPT_RANGES:
            if low <= code <= high:
                counts[language] = counts.get(language, 0) + 1
                break
    if not counts:
        return None
    language, count = max(counts.items(), key=lambda item: item[1])
    if "ja" in counts and language == "zh":
        language = "ja"  # Japanese mixes kanji with kana; Chinese has no kana
    return language if count * 2 >= letters else None


# ---- sentiment -----------------------------------------------------------------------------

_NORMALISATION_ALPHA = 15.0  # VADER's: keeps typical sums inside (-1, 1)
_NEGATION_SCALAR = -0.74
_BOOST = 0.293


class LexiconSentiment:
    """Compound sentiment in [-1, 1] from a valence lexicon (VADER's by default)."""

    def __init__(
        self,
        lexicon: Mapping[str, float] | None = None,
        negations: frozenset[str] | None = None,
        boosters: Mapping[str, float] | None = None,
    ) -> None:
        if lexicon is None or negations is None or boosters is None:
            default_lexicon, default_negations, default_boosters = _vader_resources()
            lexicon = default_lexicon if lexicon is None else lexicon
            negations = default_negations if negations is None else negations
            boosters = default_boosters if boosters is None else boosters
        self._lexicon = dict(lexicon)
        self._negations = negations
        self._boosters = dict(boosters)

    def score(self, text: str) -> float:
        lexicon = self._lexicon
        words = _WORD.findall(text.lower())
        total = 0.0
        before_but = 0.0
        for index, word in enumerate(words):
            valence = lexicon.get(word)
            if valence is None:
                if word == "but":
                    # VADER: the clause after "but" carries more weight than the one before.
                    before_but += total
                    total = 0.0
                continue
            window = words[max(0, index - 3) : index]
            if window:
                boost = self._boosters.get(window[-1])
                if boost is not None:
                    valence += boost if valence > 0 else -boost
                if any(previous in self._negations for previous in window):
                    valence *= _NEGATION_SCALAR
            total += valence
        if before_but:
            total = before_but * 0.5 + total * 1.5
        if total == 0.0:
            return 0.0
        compound = total / math.sqrt(total * total + _NORMALISATION_ALPHA)
        return round(max(-1.0, min(1.0, compound)), 4)


@cache
def _vader_resources() -> tuple[dict[str, float], frozenset[str], dict[str, float]]:
    from vaderSentiment.vaderSentiment import (  # type: ignore[import-untyped]
        BOOSTER_DICT,
        NEGATE,
        SentimentIntensityAnalyzer,
    )

    analyzer = SentimentIntensityAnalyzer()
    # Only single words: the lexicon also holds emoticons (":)"), which our tokens
    # never are.
    lexicon = {word: float(value) for word, value in analyzer.lexicon.items() if word.isalpha()}
    negations = frozenset(NEGATE)
    boosters = {word: abs(float(value)) for word, value in BOOSTER_DICT.items()}
    # Decreasing boosters ("barely", "slightly") weaken rather than strengthen.
    for word, value in BOOSTER_DICT.items():
        if value < 0:
            boosters[word] = float(value)
    return lexicon, negations, boosters
