"""The host's parser of docs/protocol.md: framing, escapes, and bytes arriving in any pieces."""
from tinylm.boards.protocol import (
    Done,
    Error,
    Other,
    Parser,
    Ready,
    Text,
    TextEnd,
    escape,
    parse_fields,
)

STREAM = (b"I (31) boot: ESP-IDF v5.2\r\n"
          b"@ready proto=1 max_line=255 model=stories260K\r\n"
          b"@text Once\\nupon a \\\\time\\r\\n\xc3\xa9\xff\r\n"
          b"@done tokens=4 ms=80 tok_s=50.00 stop=eos\n"
          b"@error line-too-long the line had 300 bytes\n")
EVENTS = [Other(b"I (31) boot: ESP-IDF v5.2"),
          Ready({"proto": "1", "max_line": "255", "model": "stories260K"}),
          Text(b"Once\nupon a \\time\r\n\xc3\xa9\xff"), TextEnd(),
          Done({"tokens": "4", "ms": "80", "tok_s": "50.00", "stop": "eos"}),
          Error("line-too-long", "the line had 300 bytes")]


def merge_text(events):
    """Events with consecutive Text pieces joined: how they split depends on the reads."""
    merged = []
    for event in events:
        if isinstance(event, Text) and merged and isinstance(merged[-1], Text):
            merged[-1] = Text(merged[-1].data + event.data)
        else:
            merged.append(event)
    return merged


def test_a_whole_stream_parses_into_events():
    assert Parser().feed(STREAM) == EVENTS


def test_any_split_of_the_stream_gives_the_same_events():
    for cut in range(1, len(STREAM)):
        parser = Parser()
        events = parser.feed(STREAM[:cut]) + parser.feed(STREAM[cut:])
        assert merge_text(events) == EVENTS, cut


def test_byte_by_byte_text_streams_as_it_comes():
    parser = Parser()
    pieces = [parser.feed(bytes([b])) for b in b"@text ab\\nc\n"]
    assert pieces[:6] == [[]] * 6                 # "@text " is not yet text
    assert pieces[6] == [Text(b"a")] and pieces[7] == [Text(b"b")]
    assert pieces[8] == [] and pieces[9] == [Text(b"\n")]     # the escape waits for its letter
    assert pieces[11] == [TextEnd()]


def test_escape_round_trips_every_byte():
    data = bytes(range(256)) * 2
    assert b"\n" not in escape(data) and b"\r" not in escape(data)
    events = Parser().feed(b"@text " + escape(data) + b"\n")
    assert merge_text(events) == [Text(data), TextEnd()]


def test_unknown_escapes_and_lines_are_kept():
    assert Parser().feed(b"@text a\\tb\n") == [Text(b"a\\tb"), TextEnd()]
    assert Parser().feed(b"@textual\n@text\n") == [Other(b"@textual"), TextEnd()]


def test_fields():
    assert parse_fields(b"a=1  b=x=y junk c=") == {"a": "1", "b": "x=y", "c": ""}
