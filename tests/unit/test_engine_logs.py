"""engine.logs: the json-file writer (byte for byte as Docker's), rotation, the reader behind
`docker logs` (tail, since/until, follow across rotations), stream framing and since/until
parsing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from bosun.engine.errors import InvalidParameter
from bosun.engine.logs import (
    PARTIAL_SIZE,
    JsonLogWriter,
    encode_entry,
    format_time,
    format_time_fixed,
    frame,
    parse_time,
    read_logs,
)

T0 = 1_767_323_045_000_000_000  # 2026-01-02T03:04:05Z in ns


def entries(path) -> list[dict]:
    with open(path, "rb") as f:
        return [json.loads(line) for line in f]


def line(stream: str, log: str, ns: int) -> bytes:
    return encode_entry(stream, log.encode(), ns)


# -- encoding --------------------------------------------------------------------------------

def test_entry_bytes_match_dockers_encoder():
    got = encode_entry("stdout", b'a"b\\c\td<e>&f\x01\r\n', T0 + 120_000_000)
    assert got == (b'{"log":"a\\"b\\\\c\\u0009d\\u003ce\\u003e\\u0026f\\u0001\\r\\n",'
                   b'"stream":"stdout","time":"2026-01-02T03:04:05.12Z"}\n')


def test_non_utf8_becomes_one_replacement_per_byte_like_go():
    # \xff: invalid; \xe2\x82 then space: truncated sequence (2 bytes); \xed\xa0\x80: surrogate
    got = encode_entry("stderr", b"x\xff\xe2\x82 \xed\xa0\x80\xc3\xa9\xe2\x80\xa8\n", T0)
    assert got.startswith(b'{"log":"x' + b"\\ufffd" * 3 + b" " + b"\\ufffd" * 3
                          + "é".encode() + b'\\u2028\\n","stream":"stderr"')
    assert json.loads(got)["log"] == "x" + "\ufffd" * 3 + " " + "\ufffd" * 3 + "é\u2028\n"


def test_time_formats():
    assert format_time(T0) == "2026-01-02T03:04:05Z"
    assert format_time(T0 + 1) == "2026-01-02T03:04:05.000000001Z"
    assert format_time(T0 + 500_000_000) == "2026-01-02T03:04:05.5Z"
    assert format_time_fixed(T0 + 500_000_000) == "2026-01-02T03:04:05.500000000Z"


def test_frame():
    assert frame(1, b"hi") == b"\x01\x00\x00\x00\x00\x00\x00\x02hi"
    assert frame(2, b"x" * 300)[:8] == b"\x02\x00\x00\x00\x00\x00\x01\x2c"


# -- writer ----------------------------------------------------------------------------------

def test_writer_splits_lines_and_buffers_partials_per_stream(tmp_path):
    path = tmp_path / "c-json.log"
    with JsonLogWriter(str(path)) as w:
        w.write("stdout", b"one\ntw")
        w.write("stderr", b"err")
        w.write("stdout", b"o\nthree\n")
        assert [e["log"] for e in entries(path)] == ["one\n", "two\n", "three\n"]
        w.write("stderr", b"or\n")
        w.write("stdout", b"no newline")
    got = entries(path)
    assert [(e["stream"], e["log"]) for e in got] == [
        ("stdout", "one\n"), ("stdout", "two\n"), ("stdout", "three\n"),
        ("stderr", "error\n"), ("stdout", "no newline")]
    assert all(e["time"].endswith("Z") for e in got)


def test_writer_flush_writes_partial_without_newline(tmp_path):
    path = tmp_path / "log"
    w = JsonLogWriter(str(path))
    w.write("stdout", b"prompt> ")
    assert path.read_bytes() == b""
    w.flush()
    assert [e["log"] for e in entries(path)] == ["prompt> "]
    w.write("stdout", b"answer\n")
    w.close()
    assert [e["log"] for e in entries(path)] == ["prompt> ", "answer\n"]


def test_writer_cuts_long_lines_at_16k(tmp_path):
    path = tmp_path / "log"
    with JsonLogWriter(str(path)) as w:
        w.write("stdout", b"a" * (PARTIAL_SIZE * 2 + 10) + b"\nb")
        logs = [e["log"] for e in entries(path)]
        assert logs == ["a" * PARTIAL_SIZE, "a" * PARTIAL_SIZE, "a" * 10 + "\n"]
        w.write("stdout", b"b" * PARTIAL_SIZE)  # pending "b" + 16 KiB: one piece goes out
        assert entries(path)[-1]["log"] == "b" * PARTIAL_SIZE
    assert entries(path)[-1]["log"] == "b"


def test_writer_appends_to_existing_file(tmp_path):
    path = tmp_path / "log"
    path.write_bytes(line("stdout", "old\n", T0))
    with JsonLogWriter(str(path)) as w:
        w.write("stdout", b"new\n")
    assert [e["log"] for e in entries(path)] == ["old\n", "new\n"]


def test_rotation_keeps_max_file_files(tmp_path):
    path = tmp_path / "log"
    one = len(line("stdout", "line-00\n", T0))
    with JsonLogWriter(str(path), max_size=2 * one, max_file=3) as w:
        for i in range(7):
            w.write("stdout", f"line-{i:02d}\n".encode())
    assert sorted(os.listdir(tmp_path)) == ["log", "log.1", "log.2"]
    # rotation happens before a write once the file has reached max-size
    assert [e["log"] for e in entries(path)] == ["line-06\n"]
    assert [e["log"] for e in entries(f"{path}.1")] == ["line-04\n", "line-05\n"]
    assert [e["log"] for e in entries(f"{path}.2")] == ["line-02\n", "line-03\n"]


def test_rotation_with_one_file_starts_over(tmp_path):
    path = tmp_path / "log"
    with JsonLogWriter(str(path), max_size=10, max_file=1) as w:
        w.write("stdout", b"a\nb\n")
        w.write("stdout", b"c\n")
    assert os.listdir(tmp_path) == ["log"]
    assert [e["log"] for e in entries(path)] == ["c\n"]


def test_writer_module_stays_import_light(tmp_path):
    # the monitor process that runs the writer must not pay for json/re/enum/threading
    code = ("import sys; import bosun.engine.logs as l; "
            "w = l.JsonLogWriter(sys.argv[1]); w.write('stdout', b'x\\n'); w.close(); "
            "print(' '.join(m for m in ('json', 're', 'enum', 'threading', 'typing', "
            "'datetime') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-I", "-c", code, str(tmp_path / "log")],
                         capture_output=True, text=True, check=True)
    assert out.stdout.split() == []
    assert entries(tmp_path / "log")[0]["log"] == "x\n"


# -- reader ----------------------------------------------------------------------------------

def write_raw(path, *lines: bytes) -> None:
    with open(path, "ab") as f:
        f.write(b"".join(lines))


def test_read_streams_timestamps_and_corrupt_lines(tmp_path):
    path = tmp_path / "log"
    write_raw(path,
              line("stdout", "out\n", T0),
              b"not json\n",
              b'{"log":"x","stream":"stdin","time":"2026-01-02T03:04:05Z"}\n',
              b'{"log":"x","stream":"stdout","time":"yesterday"}\n',
              b'{"stream":"stderr","time":"2026-01-02T03:04:06Z"}\n',  # Docker omits empty log
              line("stderr", "err \ufffd\n", T0 + 1_500_000_000),
              b'{"log":"half')
    assert list(read_logs(str(path))) == [
        (1, b"out\n"), (2, b""), (2, "err \ufffd\n".encode())]
    assert list(read_logs(str(path), stdout=False)) == [(2, b""), (2, "err \ufffd\n".encode())]
    assert list(read_logs(str(path), stderr=False, timestamps=True)) == [
        (1, b"2026-01-02T03:04:05.000000000Z out\n")]


def test_read_missing_file_is_empty(tmp_path):
    assert list(read_logs(str(tmp_path / "none"))) == []
    assert list(read_logs(str(tmp_path / "none"), tail=3)) == []


def test_since_inclusive_until_stops(tmp_path):
    path = tmp_path / "log"
    write_raw(path, *(line("stdout", f"{i}\n", T0 + i * 1_000_000_000) for i in range(5)))
    s = T0 / 1e9
    assert [p for _, p in read_logs(str(path), since=s + 1)] == [b"1\n", b"2\n", b"3\n", b"4\n"]
    assert [p for _, p in read_logs(str(path), until=s + 2)] == [b"0\n", b"1\n", b"2\n"]
    assert [p for _, p in read_logs(str(path), since=s + 1, until=s + 2.5)] == [b"1\n", b"2\n"]


def test_tail_spans_rotated_files_and_counts_before_filters(tmp_path):
    path = tmp_path / "log"
    write_raw(f"{path}.2", line("stdout", "a\n", T0), line("stderr", "b\n", T0 + 1))
    write_raw(f"{path}.1", line("stdout", "c\n", T0 + 2))
    write_raw(path, line("stderr", "d\n", T0 + 3), line("stdout", "e\n", T0 + 4))
    read = lambda **kw: [p.decode() for _, p in read_logs(str(path), **kw)]
    assert read() == ["a\n", "b\n", "c\n", "d\n", "e\n"]
    assert read(tail=2) == ["d\n", "e\n"]
    assert read(tail=4) == ["b\n", "c\n", "d\n", "e\n"]
    assert read(tail=100) == ["a\n", "b\n", "c\n", "d\n", "e\n"]
    assert read(tail=0) == []
    assert read(tail=3, stderr=False) == ["c\n", "e\n"]  # last 3 lines, then stdout only


def test_tail_on_a_big_file(tmp_path):
    path = tmp_path / "log"
    write_raw(path, *(line("stdout", f"{i:06d}" + "x" * 100 + "\n", T0 + i) for i in range(3000)))
    got = [p[:6] for _, p in read_logs(str(path), tail=1500)]
    assert got == [f"{i:06d}".encode() for i in range(1500, 3000)]


def test_follow_reads_new_lines_until_not_running(tmp_path):
    path = tmp_path / "log"
    alive = threading.Event()
    alive.set()
    w = JsonLogWriter(str(path))
    w.write("stdout", b"before\n")

    def produce():
        for i in range(3):
            time.sleep(0.02)
            w.write("stderr" if i % 2 else "stdout", f"live {i}\n".encode())
        w.write("stdout", b"last, after the exit check\n")
        alive.clear()

    t = threading.Thread(target=produce)
    t.start()
    got = list(read_logs(str(path), follow=True, running=alive.is_set, poll=0.01))
    t.join()
    w.close()
    assert got == [(1, b"before\n"), (1, b"live 0\n"), (2, b"live 1\n"), (1, b"live 2\n"),
                   (1, b"last, after the exit check\n")]


def test_follow_with_tail_zero_shows_only_new_lines(tmp_path):
    path = tmp_path / "log"
    with JsonLogWriter(str(path)) as w:
        w.write("stdout", b"old\n")
        calls = []

        def running():
            calls.append(1)
            if len(calls) == 2:
                w.write("stdout", b"new\n")
            return len(calls) < 4

        got = list(read_logs(str(path), follow=True, tail=0, running=running, poll=0.001))
    assert got == [(1, b"new\n")]


def test_follow_survives_rotation(tmp_path):
    path = tmp_path / "log"
    one = len(line("stdout", "msg-00\n", T0))
    w = JsonLogWriter(str(path), max_size=one, max_file=2)
    done = threading.Event()

    got: list[bytes] = []

    def produce():
        for i in range(8):
            # each write rotates: wait until the follower has the previous line, so that it
            # meets one rotation at a time (two before it looks would drop a file, as Docker's
            # follow would on a slow reader) and the test does not depend on the machine's load
            deadline = time.monotonic() + 10
            while len(got) < i and time.monotonic() < deadline:
                time.sleep(0.002)
            w.write("stdout", f"msg-{i:02d}\n".encode())
        done.set()

    t = threading.Thread(target=produce)
    t.start()
    for _, p in read_logs(str(path), follow=True, running=lambda: not done.is_set(),
                          poll=0.005):
        got.append(p)
    t.join()
    w.close()
    assert got == [f"msg-{i:02d}\n".encode() for i in range(8)]


def test_follow_stops_on_stop_event_and_on_until(tmp_path):
    path = tmp_path / "log"
    write_raw(path, line("stdout", "x\n", time.time_ns()))
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    start = time.monotonic()
    assert list(read_logs(str(path), follow=True, running=lambda: True, stop=stop,
                          poll=0.01)) == [(1, b"x\n")]
    assert time.monotonic() - start < 2

    start = time.monotonic()
    got = list(read_logs(str(path), follow=True, running=lambda: True,
                         until=time.time() + 0.15, poll=0.01))
    assert got == [(1, b"x\n")]
    assert 0.1 < time.monotonic() - start < 2


def test_closing_a_follow_reader_releases_its_file(tmp_path):
    path = tmp_path / "log"
    write_raw(path, line("stdout", "x\n", T0))
    before = len(os.listdir("/proc/self/fd"))
    reader = read_logs(str(path), follow=True, running=lambda: True, poll=0.01)
    assert next(reader) == (1, b"x\n")
    reader.close()
    assert len(os.listdir("/proc/self/fd")) == before


# -- parse_time ------------------------------------------------------------------------------

NOW = 1_767_323_045.25


@pytest.mark.parametrize("value, expected", [
    ("1700000000", 1_700_000_000.0),
    ("1700000000.5", 1_700_000_000.5),
    ("1700000000.123456789", 1_700_000_000.123456789),
    ("0", 0.0),
    ("", 0.0),
    ("10m", 1_767_322_445.0),   # whole seconds, as GetTimestamp's Unix()
    ("1h30m", 1_767_317_645.0),
    ("1.5h", 1_767_317_645.0),
    ("-10s", 1_767_323_055.0),
    ("300ms", 1_767_323_044.0),
    ("2026-01-02T03:04:05Z", 1_767_323_045.0),
    ("2026-01-02T03:04:05.25Z", 1_767_323_045.25),
    ("2026-01-02T04:04:05+01:00", 1_767_323_045.0),
    ("2026-01-02T00:04:05-03:00", 1_767_323_045.0),
    ("2026-01-02T03:04Z", 1_767_323_040.0),
    ("2026-01-02Z", 1_767_312_000.0),
])
def test_parse_time(value, expected):
    assert parse_time(value, now=NOW) == pytest.approx(expected, abs=1e-6)


def test_parse_time_without_zone_is_local(monkeypatch):
    monkeypatch.setenv("TZ", "UTC+02")  # POSIX: two hours *behind* UTC
    time.tzset()
    try:
        assert parse_time("2026-01-02T01:04:05", now=NOW) == 1_767_323_045.0
        assert parse_time("2026-01-02", now=NOW) == 1_767_312_000.0 + 7200
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


@pytest.mark.parametrize("value, message", [
    ("yesterday", 'failed to parse value as time or duration: "yesterday"'),
    ("10x", 'failed to parse value as time or duration: "10x"'),
    ("1.2.3", 'failed to parse value as time or duration: "1.2.3"'),
    ("12.", 'failed to parse value as time or duration: "12."'),
    ("2026-13-01", 'parsing time "2026-13-01"'),
    ("2026-02-30T00:00:00Z", 'parsing time "2026-02-30T00:00:00Z"'),
    ("2026-01-02T25:00:00Z", 'parsing time'),
])
def test_parse_time_invalid(value, message):
    with pytest.raises(InvalidParameter, match=message.replace(".", r"\.")):
        parse_time(value, now=NOW)
