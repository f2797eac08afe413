"""Tweet text analysis: cleaning, extraction, language and sentiment."""

from __future__ import annotations

import pytest

from starling.events import TweetCreated
from starling.loadgen import TrafficConfig, TrafficGenerator
from starling.services.text import (
    LexiconSentiment,
    clean_text,
    detect_language,
    extract_hashtags,
    extract_mentions,
)

pytestmark = pytest.mark.unit


def test_clean_text_normalises_and_collapses() -> None:
    assert clean_text("  hello\tworld \n") == "hello world"
    assert clean_text("zero\u200bwidth and\x00control") == "zero width and control"
    assert clean_text("cafe\u0301") == "café"  # NFC
    assert clean_text(" \u200b\t ") == ""


def test_hashtags_are_case_folded_deduplicated_and_word_bounded() -> None:
    text = "#Kafka rocks #kafka #STREAMS a#b &#39; #123 #über_cool #Straße"
    assert extract_hashtags(text) == ["kafka", "streams", "über_cool", "strasse"]
    assert extract_hashtags("no tags here") == []


def test_mentions_are_handles_of_at_most_15_characters() -> None:
    text = "@Alice and @bob_2 but not mail@example.com nor @averyveryverylonghandle @ALICE"
    assert extract_mentions(text) == ["alice", "bob_2"]


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("just finished the game and it was really good", "en"),
        ("el partido de hoy fue muy bueno para todos", "es"),
        ("je pense que le match est pour nous", "fr"),
        ("heute ist das Wetter nicht gut und ich bin müde", "de"),
        ("сегодня хорошая погода", "ru"),
        ("今日はいい天気ですね", "ja"),
        ("今天天气很好", "zh"),
        ("#kafka #airflow", "und"),
    ],
)
def test_language_heuristic(text: str, language: str) -> None:
    assert detect_language(text) == language


def test_sentiment_signs_and_rules() -> None:
    score = LexiconSentiment().score
    assert score("this is great and I love it") > 0.5
    assert score("terrible awful day") < -0.5
    assert score("not good") < 0 < score("good")
    assert score("very good") > score("good")
    assert score("the train is late") == pytest.approx(score("the train is late"))
    assert score("kafka cluster deploy") == 0.0
    assert -1.0 <= score("love " * 50) <= 1.0


def test_sentiment_agrees_with_full_vader_on_generated_tweets() -> None:
    from vaderSentiment.vaderSentiment import (  # type: ignore[import-untyped]
        SentimentIntensityAnalyzer,
    )

    vader = SentimentIntensityAnalyzer()
    ours = LexiconSentiment()
    generator = TrafficGenerator(TrafficConfig(seed=3, users=200))
    texts = [e.text for e in generator.events(6000) if isinstance(e, TweetCreated)]

    def sign(value: float) -> int:
        return 0 if abs(value) < 0.05 else (1 if value > 0 else -1)

    agree = sum(sign(ours.score(t)) == sign(vader.polarity_scores(t)["compound"]) for t in texts)
    assert agree / len(texts) >= 0.9
