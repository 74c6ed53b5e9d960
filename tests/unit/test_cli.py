"""bosun-runtime's command line: flag parsing, exit codes, `spec`, and the log format."""

from __future__ import annotations

import json
import os
import re
import stat

import pytest

from bosun import __version__
from bosun.runtime import spec
from bosun.runtime.cli import COMMANDS, GLOBAL, GLOBAL_SHORT, Log, Usage, main, parse_flags

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")
CREATE = COMMANDS["create"]
EXEC = COMMANDS["exec"]


# -- parse_flags -------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["-root", "/r"], ["--root", "/r"], ["--root=/r"],
                                  ["-root=/r"]])
def test_string_flag_spellings(argv):
    assert parse_flags(argv + ["list"], GLOBAL, GLOBAL_SHORT) == ({"root": "/r"}, ["list"])


def test_value_may_contain_equals_and_dashes():
    opts, rest = parse_flags(["--bundle", "-weird", "--pid-file=/a=b"], *CREATE)
    assert opts == {"bundle": "-weird", "pid-file": "/a=b"}
    assert rest == []


@pytest.mark.parametrize("arg,value", [("--debug", True), ("-debug", True),
                                       ("--debug=true", True), ("--debug=1", True),
                                       ("--debug=false", False), ("--debug=FALSE", False),
                                       ("--debug=0", False)])
def test_bool_flags(arg, value):
    assert parse_flags([arg], GLOBAL, GLOBAL_SHORT) == ({"debug": value}, [])


def test_bool_flag_does_not_take_the_next_word():
    assert parse_flags(["--debug", "false"], GLOBAL, GLOBAL_SHORT) == ({"debug": True},
                                                                        ["false"])


def test_int_flag():
    assert parse_flags(["--preserve-fds", "3"], *CREATE)[0] == {"preserve-fds": 3}
    assert parse_flags(["--preserve-fds=0"], *CREATE)[0] == {"preserve-fds": 0}


@pytest.mark.parametrize("argv", [["--preserve-fds", "x"], ["--preserve-fds=1.5"],
                                  ["--preserve-fds="]])
def test_int_flag_rejects_non_integers(argv):
    with pytest.raises(Usage, match="invalid value .* for --preserve-fds"):
        parse_flags(argv, *CREATE)


def test_list_flag_accumulates_across_spellings():
    opts, rest = parse_flags(["-e", "A=1", "--env", "B=2", "--env=C=3", "-c", "CAP_KILL", "id"],
                             *EXEC)
    assert opts == {"env": ["A=1", "B=2", "C=3"], "cap": ["CAP_KILL"]}
    assert rest == ["id"]


def test_short_aliases():
    assert parse_flags(["-b", "/bundle", "-d"], *COMMANDS["run"])[0] == {
        "bundle": "/bundle", "detach": True}
    assert parse_flags(["-v"], GLOBAL, GLOBAL_SHORT)[0] == {"version": True}


@pytest.mark.parametrize("arg", ["--nope", "-nope", "--nope=1", "-x"])
def test_unknown_flag(arg):
    with pytest.raises(Usage) as ei:
        parse_flags(["--debug", arg], GLOBAL, GLOBAL_SHORT)
    assert str(ei.value) == f"flag provided but not defined: {arg.split('=')[0]}"


def test_missing_value():
    with pytest.raises(Usage, match="flag needs an argument: --root"):
        parse_flags(["--root"], GLOBAL, GLOBAL_SHORT)


def test_stops_at_first_positional():
    opts, rest = parse_flags(["--debug", "create", "--bundle", "/b", "id"], GLOBAL, GLOBAL_SHORT)
    assert opts == {"debug": True}
    assert rest == ["create", "--bundle", "/b", "id"]


def test_double_dash_ends_flags():
    opts, rest = parse_flags(["-t", "--", "--not-a-flag", "x"], *EXEC)
    assert opts == {"tty": True}
    assert rest == ["--not-a-flag", "x"]


def test_single_dash_is_positional():
    assert parse_flags(["-", "--debug"], GLOBAL, GLOBAL_SHORT) == ({}, ["-", "--debug"])


def test_flags_after_positionals_when_asked():
    opts, _ = parse_flags(["id", "--force"], *COMMANDS["delete"], stop_at_positional=False)
    assert opts == {"force": True}


def test_later_value_wins():
    assert parse_flags(["--root", "/a", "--root", "/b"], GLOBAL, GLOBAL_SHORT)[0] == {
        "root": "/b"}


# -- main ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("flag", ["--version", "-v", "-version"])
def test_version(flag, capsys):
    assert main([flag]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == f"bosun-runtime version {__version__}"
    assert lines[1] == f"spec: {spec.OCI_VERSION}"
    assert err == ""


def test_help_and_no_command(capsys):
    assert main(["--help"]) == 0
    assert "usage: bosun-runtime" in capsys.readouterr().out
    assert main([]) == 2
    assert "usage: bosun-runtime" in capsys.readouterr().out


def test_unknown_command(capsys):
    assert main(["frobnicate", "x"]) == 2
    out, err = capsys.readouterr()
    assert err == "bosun-runtime: unknown command 'frobnicate'\n"
    assert out == ""


def test_unknown_global_flag(capsys):
    assert main(["--frob", "state", "x"]) == 2
    assert "flag provided but not defined: --frob" in capsys.readouterr().err


def test_unknown_command_flag(capsys, tmp_path):
    assert main(["--root", str(tmp_path), "delete", "--nope", "x"]) == 2
    assert "flag provided but not defined: --nope" in capsys.readouterr().err


def test_systemd_cgroup_is_a_one_line_error(capsys):
    assert main(["--systemd-cgroup", "create", "--bundle", "/nonexistent", "x"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.endswith("\n")
    assert err.startswith("bosun-runtime: ") and "--systemd-cgroup" in err
    assert "Traceback" not in err


def test_systemd_cgroup_error_logged_as_json(capsys, tmp_path):
    log = tmp_path / "log.json"
    rc = main(["--log", str(log), "--log-format", "json", "--systemd-cgroup", "state", "x"])
    assert rc == 1
    (line,) = log.read_text().splitlines()
    entry = json.loads(line)
    assert set(entry) == {"level", "msg", "time"}
    assert entry["level"] == "error" and "--systemd-cgroup" in entry["msg"]
    assert RFC3339.match(entry["time"])
    assert capsys.readouterr().err.startswith("bosun-runtime: --systemd-cgroup")


def test_bad_log_format(capsys):
    assert main(["--log-format", "xml", "list"]) == 2
    assert "unknown log format 'xml'" in capsys.readouterr().err


def test_state_of_missing_container(capsys, tmp_path):
    assert main(["--root", str(tmp_path), "state", "nosuch"]) == 1
    err = capsys.readouterr().err
    assert err == "bosun-runtime: container 'nosuch' does not exist\n"


@pytest.mark.parametrize("argv", [["start"], ["state", "a", "b"], ["kill"],
                                  ["kill", "a", "KILL", "x"], ["delete"], ["ps"], ["exec"],
                                  ["exec", "id"]])
def test_wrong_argument_counts_are_usage_errors(argv, capsys, tmp_path):
    assert main(["--root", str(tmp_path)] + argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("bosun-runtime: ") and err.count("\n") == 1


def test_list_of_empty_root(capsys, tmp_path):
    assert main(["--root", str(tmp_path / "none"), "list", "-q"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["--root", str(tmp_path / "none"), "list", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


# -- spec ----------------------------------------------------------------------------------------

def test_spec_writes_config(tmp_path, capsys):
    assert main(["spec", "--bundle", str(tmp_path)]) == 0
    path = tmp_path / "config.json"
    assert stat.S_IMODE(path.stat().st_mode) & 0o644 == 0o644
    config = json.loads(path.read_text())
    assert config == json.loads(json.dumps(spec.default_spec()))
    (tmp_path / "rootfs").mkdir()
    spec.load(str(tmp_path))          # what spec writes, create accepts
    assert sorted(os.listdir(tmp_path)) == ["config.json", "rootfs"]   # no temp file left


def test_spec_in_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["spec"]) == 0
    assert (tmp_path / "config.json").is_file()


def test_spec_rootless(tmp_path):
    assert main(["spec", "-b", str(tmp_path), "--rootless"]) == 0
    config = json.loads((tmp_path / "config.json").read_text())
    assert {"type": "user"} in config["linux"]["namespaces"]
    assert config["linux"]["uidMappings"][0]["hostID"] == os.geteuid()


def test_spec_refuses_to_overwrite(tmp_path, capsys):
    path = tmp_path / "config.json"
    path.write_text("mine")
    assert main(["spec", "--bundle", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "already exists" in err and str(path) in err and err.count("\n") == 1
    assert path.read_text() == "mine"


def test_spec_takes_no_arguments(tmp_path, capsys):
    assert main(["spec", "--bundle", str(tmp_path), "extra"]) == 2
    assert not (tmp_path / "config.json").exists()


def test_spec_into_missing_directory_is_an_error_not_a_traceback(tmp_path, capsys):
    assert main(["spec", "--bundle", str(tmp_path / "no" / "such")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("bosun-runtime: ") and err.count("\n") == 1


# -- Log -----------------------------------------------------------------------------------------

def test_log_json_lines(tmp_path, capsys):
    path = tmp_path / "log"
    log = Log(str(path), "json", False)
    log.warning('he said "hi"\nbye')
    log.write("info", "second")
    entries = [json.loads(x) for x in path.read_text().splitlines()]
    assert [e["level"] for e in entries] == ["warning", "info"]
    assert entries[0]["msg"] == 'he said "hi"\nbye'
    for e in entries:
        assert set(e) == {"level", "msg", "time"}
        assert RFC3339.match(e["time"]), e["time"]
    assert capsys.readouterr().err == ""       # non-errors go only to the log file


def test_log_text_format(tmp_path):
    path = tmp_path / "log"
    Log(str(path), "text", False).warning("careful")
    line = path.read_text()
    m = re.fullmatch(r'time="([^"]+)" level=warning msg="careful"\n', line)
    assert m and RFC3339.match(m.group(1))


def test_log_appends(tmp_path):
    path = tmp_path / "log"
    path.write_text("earlier\n")
    Log(str(path), "json", False).error("boom")
    lines = path.read_text().splitlines()
    assert lines[0] == "earlier" and json.loads(lines[1])["msg"] == "boom"


def test_log_debug_only_when_enabled(tmp_path):
    path = tmp_path / "log"
    Log(str(path), "json", False).write("debug", "quiet")
    assert not path.exists() or path.read_text() == ""
    Log(str(path), "json", True).write("debug", "loud")
    assert json.loads(path.read_text())["msg"] == "loud"


def test_log_error_also_goes_to_stderr(tmp_path, capsys):
    path = tmp_path / "log"
    Log(str(path), "json", False).error("bad thing")
    assert capsys.readouterr().err == "bosun-runtime: bad thing\n"
    assert json.loads(path.read_text())["level"] == "error"


def test_log_without_file_writes_stderr(capsys):
    Log(None, "json", False).warning("w")
    err = capsys.readouterr().err
    assert json.loads(err)["msg"] == "w"
    Log(None, "text", False).error("e")
    assert capsys.readouterr().err == "bosun-runtime: e\n"

