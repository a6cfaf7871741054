"""Program text (issue 13): every line ending reads the same, with the same lines and columns; a UTF-8
byte-order mark is accepted; bytes that are not UTF-8 are a span error at the first bad byte, through
`diagrammar.load`, `use` and the command line (exit 2)."""
import pytest

import diagrammar
from diagrammar import errors as E
from diagrammar.cli import main

GOOD = "axis d = 4\n\ncircuit F(x: [d]) -> [d]:\n    # a comment\n    h = relu(x)\n    return h * 2\n"
BAD = "axis d = 4\ncircuit F(x: [d]) -> [d]:\n    h = relu(x)\n    return h +\n"  # 4:15, end of line
ENDINGS = {"LF": "\n", "CRLF": "\r\n", "CR": "\r"}


def written(text: str, ending: str) -> str:
    return text.replace("\n", ending)


@pytest.mark.parametrize("ending", ENDINGS)
def test_every_line_ending_parses_the_same(ending):
    reference = diagrammar.parse(GOOD, name="t.circuit")["F"]
    program = diagrammar.parse(written(GOOD, ENDINGS[ending]), name="t.circuit")
    assert program.circuits == ["F"]  # a lone CR used to leave a program with no circuits
    d = program["F"]
    assert str(d.output.type) == str(reference.output.type)
    assert [(b.op, b.span) for b in d.boxes] == [(b.op, b.span) for b in reference.boxes]


@pytest.mark.parametrize("ending", ENDINGS)
def test_every_line_ending_reports_the_same_line_and_column(ending, tmp_path):
    with pytest.raises(E.CircuitSyntaxError) as in_text:
        diagrammar.parse(written(BAD, ENDINGS[ending]), name="t.circuit")
    path = tmp_path / "t.circuit"
    path.write_bytes(written(BAD, ENDINGS[ending]).encode())
    with pytest.raises(E.CircuitSyntaxError) as in_file:
        diagrammar.load(path)
    for e in (in_text.value, in_file.value):
        assert (e.span.line, e.span.column) == (4, 15), e
        assert "return h +" in e.format()  # the source line shown under the message


@pytest.mark.parametrize("ending", ENDINGS)
def test_a_byte_order_mark_is_accepted(ending, tmp_path):
    path = tmp_path / "bom.circuit"
    path.write_bytes(b"\xef\xbb\xbf" + written(GOOD, ENDINGS[ending]).encode())
    assert diagrammar.load(path).circuits == ["F"]
    assert diagrammar.parse("\ufeff" + GOOD).circuits == ["F"]
    path.write_bytes(b"\xef\xbb\xbf" + written(BAD, ENDINGS[ending]).encode())
    with pytest.raises(E.CircuitSyntaxError) as info:
        diagrammar.load(path)
    assert (info.value.span.line, info.value.span.column) == (4, 15)  # the mark takes no column


@pytest.mark.parametrize("ending", ENDINGS)
@pytest.mark.parametrize("bad,line,column", [
    (b"    return r\xe9lu(h)\n", 4, 13),  # Latin-1
    (b"    # caf\xc3\xa9 \xff\n    return h\n", 4, 12),  # after a good two-byte character: columns count characters
    (b"    return h\x80\n", 4, 13),  # a lone continuation byte
    (b"    return h # \xe2\x82\n", 4, 16),  # a character cut short at the end of the file
])
def test_bytes_that_are_not_utf8_are_a_span_error_at_the_first_bad_byte(bad, line, column, ending, tmp_path):
    head = written("axis d = 4\ncircuit F(x: [d]) -> [d]:\n    h = relu(x)\n", ENDINGS[ending]).encode()
    path = tmp_path / "latin.circuit"
    path.write_bytes(head + bad.replace(b"\n", ENDINGS[ending].encode()))
    with pytest.raises(E.NotUTF8) as info:
        diagrammar.load(path)
    e = info.value
    assert isinstance(e, E.CircuitSyntaxError)
    assert (e.span.file, e.span.line, e.span.column) == (str(path), line, column)
    assert "not UTF-8" in e.message


def test_a_used_file_that_is_not_utf8_is_reported_in_that_file(tmp_path):
    (tmp_path / "lib.circuit").write_bytes(b"axis d = 4\naxis \xe9 = 2\n")
    main_file = tmp_path / "main.circuit"
    main_file.write_text('use "lib.circuit"\ncircuit F(x: [d]) -> [d]:\n    return x\n')
    with pytest.raises(E.CircuitError) as info:
        diagrammar.load(main_file)
    found = [x for x in info.value.errors if isinstance(x, E.NotUTF8)]
    assert found and found[0].span.file.endswith("lib.circuit")
    assert (found[0].span.line, found[0].span.column) == (2, 6)


def test_the_command_line_exits_2_naming_file_line_and_column(tmp_path, capsys):
    path = tmp_path / "latin.circuit"
    path.write_bytes(b"axis d = 4\r\ncircuit F(x: [d]) -> [d]:\r\n    return r\xe9lu(x)\r\n")
    for verb in (["check"], ["render", "-o", str(tmp_path / "f.svg")], ["fmt"]):
        assert main(verb + [str(path)]) == 2
        err = capsys.readouterr().err
        assert f"{path}:3:13: error:" in err and "not UTF-8" in err and "Traceback" not in err
    assert not (tmp_path / "f.svg").exists()
    path.write_bytes(b"\xef\xbb\xbfaxis d = 4\rcircuit F(x: [d]) -> [d]:\r    return relu(x)\r")
    assert main(["check", str(path)]) == 0
    assert "F(x: [d]) -> [d]" in capsys.readouterr().out
