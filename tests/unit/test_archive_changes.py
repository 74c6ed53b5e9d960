"""`docker import/commit --change`: Dockerfile instructions applied to an image config, with
Docker's parsing, expansion and messages. The expected values were checked against a real
dockerd where its version already behaved as current Docker does (see the notes where
dockerd 20.10 differs)."""

from __future__ import annotations

import pytest

from bosun.image.changes import (ChangeError, Lexer, apply_changes, go_quote, parse_changes,
                                 parse_go_duration, parse_port_spec)
from bosun.image.manifest import RunConfig

S = 1_000_000_000


def err(changes, match=None) -> str:
    with pytest.raises(ChangeError) as e:
        apply_changes(changes)
    if match is not None:
        assert str(e.value) == match
    return str(e.value)


# -- CMD / ENTRYPOINT -------------------------------------------------------------------------

def test_cmd_exec_and_shell_forms():
    assert apply_changes(['CMD ["a", "b c"]']) == {"Cmd": ["a", "b c"], "ArgsEscaped": False}
    assert apply_changes(["CMD echo hi  there"])["Cmd"] == ["/bin/sh", "-c", "echo hi  there"]
    # not a JSON array: the shell form, the text as written
    assert apply_changes(["CMD [not json"])["Cmd"] == ["/bin/sh", "-c", "[not json"]
    assert apply_changes(['CMD ["a"] x'])["Cmd"] == ["/bin/sh", "-c", '["a"] x']
    # no variable expansion in CMD
    assert apply_changes(["ENV A=1", "CMD echo $A"])["Cmd"] == ["/bin/sh", "-c", "echo $A"]


def test_cmd_uses_the_image_shell():
    out = apply_changes(["CMD echo hi"], {"Shell": ["/bin/bash", "-o", "pipefail", "-c"]})
    assert out["Cmd"] == ["/bin/bash", "-o", "pipefail", "-c", "echo hi"]


def test_empty_cmd_and_entrypoint():
    # current Docker's resolveCmdLine: an empty command line is [] (dockerd 20.10 made an
    # empty shell-form CMD ["/bin/sh", "-c"])
    assert apply_changes(["CMD []"])["Cmd"] == []
    assert apply_changes(["CMD"])["Cmd"] == []
    assert apply_changes(["ENTRYPOINT []"])["Entrypoint"] == []


def test_json_array_must_hold_strings():
    err(['CMD ["a", 1]'],
        "when using JSON array syntax, arrays must be comprised of strings only")
    err(["ENTRYPOINT [null]"],
        "when using JSON array syntax, arrays must be comprised of strings only")
    # NaN is no JSON (for Go): the shell form
    assert apply_changes(["CMD [NaN]"])["Cmd"] == ["/bin/sh", "-c", "[NaN]"]


def test_entrypoint_clears_cmd_unless_set_before():
    assert apply_changes(['ENTRYPOINT ["y"]'], {"Cmd": ["old"]})["Cmd"] is None
    assert apply_changes(['CMD ["x"]', 'ENTRYPOINT ["y"]']) == {
        "Cmd": ["x"], "Entrypoint": ["y"], "ArgsEscaped": False}
    assert apply_changes(['ENTRYPOINT ["y"]', 'CMD ["x"]'])["Cmd"] == ["x"]
    assert apply_changes(["ENTRYPOINT y z"])["Entrypoint"] == ["/bin/sh", "-c", "y z"]
    # an empty CMD does not count as set
    assert apply_changes(["CMD []", 'ENTRYPOINT ["y"]'])["Cmd"] is None


def test_input_config_is_not_modified():
    config = {"Env": ["A=1"], "Labels": {"a": "b"}}
    out = apply_changes(["ENV A=2", "LABEL a=c"], config)
    assert config == {"Env": ["A=1"], "Labels": {"a": "b"}}
    assert out == {"Env": ["A=2"], "Labels": {"a": "c"}}
    assert apply_changes([], config) == config


# -- ENV / LABEL and expansion ----------------------------------------------------------------

def test_env_forms_and_expansion():
    out = apply_changes(["ENV A=1 B=$A", "ENV C=${A}x D=\"q r\" E='$A'"])
    # B=$A: the instruction sees the environment from before it (A unset)
    assert out["Env"] == ["A=1", "B=", "C=1x", "D=q r", "E=$A"]
    assert apply_changes(["ENV A 1 2  3"])["Env"] == ["A=1 2  3"]  # the legacy form
    assert apply_changes(["ENV A=1", "ENV A=2"])["Env"] == ["A=2"]  # replaced in place
    assert apply_changes(["ENV P=/usr/bin", "ENV PATH=$P:/bin"])["Env"] == [
        "P=/usr/bin", "PATH=/usr/bin:/bin"]
    assert apply_changes(['ENV A="a\\"b" B=a\\ b'])["Env"] == ['A=a"b', "B=a b"]
    assert apply_changes(["ENV A=x", "ENV B=\"${A}y\" C='${A}' D=\\$A"])["Env"] == [
        "A=x", "B=xy", "C=${A}", "D=$A"]
    assert apply_changes(["ENV A=1 \\", "  B=2"])["Env"] == ["A=1", "B=2"]


def test_env_modifiers():
    out = apply_changes(["ENV A=1 N=", ("ENV B=${A:-no} C=${Z:-def} D=${A:+set} E=${Z+x} "
                         "F=${N-unset} G=${N:-empty} H=${Z:+x}")])
    assert out["Env"][2:] == ["B=1", "C=def", "D=set", "E=", "F=", "G=empty", "H="]
    out = apply_changes(["ENV P=/usr/local/bin.tar.gz", ("ENV A=${P#*/} B=${P##*/} "
                         "C=${P%.*} D=${P%%.*} E=${P/l/L} F=${P//l/L}")])
    assert out["Env"][1:] == ["A=usr/local/bin.tar.gz", "B=bin.tar.gz",
                              "C=/usr/local/bin.tar", "D=/usr/local/bin",
                              "E=/usr/Local/bin.tar.gz", "F=/usr/LocaL/bin.tar.gz"]
    err(["ENV A=${B:?must_be_set}"], 'failed to process "${B:?must_be_set}": B: must_be_set')
    err(['ENV A="${B:?must be set}"'],
        'failed to process "\\"${B:?must be set}\\"": B: must be set')
    err(["ENV A=${B?}"], 'failed to process "${B?}": B: is not allowed to be unset')
    err(["ENV A=${B"], "failed to process \"${B\": syntax error: missing '}'")
    err(["ENV A=${}"], "failed to process \"${}\": syntax error: bad substitution")
    err(["ENV A=${B!x}"], 'failed to process "${B!x}": unsupported modifier (!) in substitution')


def test_env_errors():
    err(["ENV"], "ENV requires at least one argument")
    err(["ENV A"], "ENV must have two arguments")
    err(["ENV a=b c"], 'Syntax error - can\'t find = in "c". Must be of the form: name=value')
    err(["ENV =x"], "ENV names can not be blank")
    err(['ENV A="x'], 'failed to process "\\"x": unexpected end of statement while looking '
                      "for matching double-quote")
    err(["ENV A='x"], "failed to process \"'x\": unexpected end of statement while looking "
                      "for matching single-quote")


def test_labels():
    out = apply_changes(["LABEL a=b", 'LABEL "c d"="e f" g=h', "LABEL x y z"])
    assert out["Labels"] == {"a": "b", "c d": "e f", "g": "h", "x": "y z"}
    assert apply_changes(["ENV V=1", "LABEL v=$V"])["Labels"] == {"v": "1"}
    err(["LABEL a"], "LABEL must have two arguments")
    err(["LABEL"], "LABEL requires at least one argument")


def test_lexer_directly():
    lx = Lexer()
    env = {"A": "1", "B": "two words"}
    # $- is a special parameter (unset), $1 a positional one; a lone $ stays
    assert lx.process_word("$A-${A}-$-$1-\\$A-$", env) == "1-1--$A-$"
    assert lx.process_words("x $B 'y z'", env) == ["x", "two", "words", "y z"]
    assert lx.process_words('"$B"', env) == ["two words"]
    assert Lexer("`").process_word("a`$A", env) == "a$A"


# -- the other instructions -------------------------------------------------------------------

def test_expose():
    out = apply_changes(["EXPOSE 80 53/udp 8000-8002/tcp 9/SCTP"])
    assert set(out["ExposedPorts"]) == {"80/tcp", "53/udp", "8000/tcp", "8001/tcp",
                                        "8002/tcp", "9/sctp"}
    assert set(apply_changes(['ENV PORTS="1 2"', "EXPOSE $PORTS"])["ExposedPorts"]) == {
        "1/tcp", "2/tcp"}
    assert set(apply_changes(["EXPOSE 127.0.0.1:8080:80"])["ExposedPorts"]) == {"80/tcp"}
    # dockerd 20.10 capitalizes these (go-connections later lowercased them)
    err(["EXPOSE abc"], "invalid containerPort: abc")
    err(["EXPOSE 70000"], "invalid containerPort: 70000")
    err(["EXPOSE 80/xyz"], "invalid proto: xyz")
    err(["EXPOSE 90-80"], "invalid containerPort: 90-80")
    err(["EXPOSE"], "EXPOSE requires at least one argument")
    assert parse_port_spec("80/") == ["80/tcp"]
    with pytest.raises(ChangeError, match="no port specified: /tcp<empty>"):
        parse_port_spec("/tcp")


def test_user_workdir_volume_stopsignal():
    assert apply_changes(["ENV U=me", "USER $U:grp"])["User"] == "me:grp"
    assert apply_changes(["WORKDIR /a", "WORKDIR b", "WORKDIR ../c"])["WorkingDir"] == "/a/c"
    assert apply_changes(["WORKDIR rel"])["WorkingDir"] == "/rel"
    assert apply_changes(["WORKDIR //x//y/"])["WorkingDir"] == "//x//y/"  # absolute: as is
    assert apply_changes(["VOLUME /data /other"])["Volumes"] == {"/data": {}, "/other": {}}
    assert apply_changes(['VOLUME ["/a", "/b"]'])["Volumes"] == {"/a": {}, "/b": {}}
    assert apply_changes(["ENV D=/d", "VOLUME $D"])["Volumes"] == {"/d": {}}
    for sig in ("SIGUSR1", "9", "term", "RTMIN+3", "sigkill"):
        assert apply_changes([f"STOPSIGNAL {sig}"])["StopSignal"] == sig
    err(["STOPSIGNAL FOO"], "Invalid signal: FOO")
    err(["STOPSIGNAL 0"], "Invalid signal: 0")
    err(["USER"], "USER requires exactly one argument")
    err(["WORKDIR"], "WORKDIR requires exactly one argument")
    err(["VOLUME"], "VOLUME requires at least one argument")
    err(['VOLUME ""'], "VOLUME specified can not be an empty string")
    err(["ENV E=", "VOLUME $E"], "VOLUME specified can not be an empty string")


def test_onbuild():
    assert apply_changes(["ONBUILD RUN echo hi", "onbuild   ADD . /app"])["OnBuild"] == [
        "RUN echo hi", "ADD . /app"]
    err(["ONBUILD"], "ONBUILD requires at least one argument")
    err(["ONBUILD ONBUILD CMD x"], "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    err(["ONBUILD FROM x"], "FROM isn't allowed as an ONBUILD trigger")
    err(["ONBUILD maintainer me"], "MAINTAINER isn't allowed as an ONBUILD trigger")


def test_healthcheck():
    out = apply_changes([("HEALTHCHECK --interval=30s --timeout=5s --start-period=1m "
                         "--start-interval=2s --retries=3 CMD curl -f http://x/ || exit 1")])
    assert out["Healthcheck"] == {
        "Test": ["CMD-SHELL", "curl -f http://x/ || exit 1"], "Interval": 30 * S,
        "Timeout": 5 * S, "StartPeriod": 60 * S, "StartInterval": 2 * S, "Retries": 3}
    assert apply_changes(['HEALTHCHECK CMD ["/bin/check", "a"]'])["Healthcheck"] == {
        "Test": ["CMD", "/bin/check", "a"]}
    assert apply_changes(["HEALTHCHECK NONE"])["Healthcheck"] == {"Test": ["NONE"]}
    err(["HEALTHCHECK"], "HEALTHCHECK requires at least one argument")
    err(["HEALTHCHECK NONE x"], "HEALTHCHECK NONE takes no arguments")
    err(["HEALTHCHECK FOO x"], 'Unknown type "FOO" in HEALTHCHECK (try CMD)')
    err(["HEALTHCHECK CMD"], "Missing command after HEALTHCHECK CMD")
    err(["HEALTHCHECK --interval=1 CMD x"], 'time: missing unit in duration "1"')
    err(["HEALTHCHECK --interval=0s CMD x"], 'Interval "interval" cannot be less than 1ms')
    err(["HEALTHCHECK --retries=0 CMD x"], "--retries must be at least 1 (not 0)")
    err(["HEALTHCHECK --retries=x CMD x"], 'strconv.ParseInt: parsing "x": invalid syntax')
    err(["HEALTHCHECK --bogus=1 CMD x"], "Unknown flag: bogus")
    err(["HEALTHCHECK --interval CMD x"], "Missing a value on flag: interval")
    err(["HEALTHCHECK --interval=1s --interval=2s CMD x"], "Duplicate flag specified: interval")


def test_flags_on_other_instructions_are_refused():
    err(["CMD --foo=1 x"], "Unknown flag: foo")
    err(["ENV --x=1 A=1"], "Unknown flag: x")


# -- the Dockerfile parser --------------------------------------------------------------------

def test_not_a_change_command_keeps_the_spelling():
    # current Docker keeps the instruction as written (dockerd 20.10 lowercased it)
    err(["RUN echo"], "RUN is not a valid change command")
    err(["run echo"], "run is not a valid change command")
    for bad in ("FROM scratch", "MAINTAINER me", 'SHELL ["/bin/bash","-c"]', "ADD a b",
                "COPY a b", "ARG x", "FOO bar"):
        assert err([bad]) == f"{bad.split()[0]} is not a valid change command"
    # every instruction is checked before any is applied
    err(["ENV A=1", "RUN x"], "RUN is not a valid change command")


def test_comments_continuations_and_directives():
    assert apply_changes(["# comment", "CMD x"])["Cmd"] == ["/bin/sh", "-c", "x"]
    assert apply_changes(["cmd echo lower"])["Cmd"] == ["/bin/sh", "-c", "echo lower"]
    assert apply_changes(["CMD echo \\", "# inside", "  hi"])["Cmd"] == [
        "/bin/sh", "-c", "echo   hi"]
    # the escape directive changes both continuation and the lexer's escape
    out = apply_changes(["# escape=`", "ENV A=a`$b\\", "CMD x `", "y"])
    assert out["Env"] == ["A=a$b\\"]
    assert out["Cmd"] == ["/bin/sh", "-c", "x y"]
    err([""], "file with no instructions")
    err(["# only a comment"], "file with no instructions")
    err(["# escape=x", "CMD y"], "invalid escape token 'x' does not match ` or \\")


def test_parse_changes_shape():
    ins = parse_changes(['HEALTHCHECK --interval=5s CMD ["a"]', "ENV A=1 B=2"])
    assert (ins[0].command, ins[0].flags, ins[0].args, ins[0].json) == (
        "HEALTHCHECK", ["--interval=5s"], ["CMD", "a"], True)
    assert ins[1].pairs == [("A", "1"), ("B", "2")]


def test_result_is_a_valid_image_config():
    out = apply_changes(['CMD ["sh"]', "ENV A=1", "EXPOSE 80", "LABEL a=b", "USER u",
                         "WORKDIR /w", "VOLUME /v", "STOPSIGNAL TERM", "ONBUILD RUN x",
                         "HEALTHCHECK --retries=2 CMD true", 'ENTRYPOINT ["e"]'])
    config = RunConfig.from_json(out, "image config", "config")
    d = config.legacy_dict()
    assert d["Cmd"] == ["sh"] and d["Entrypoint"] == ["e"] and d["ExposedPorts"] == {
        "80/tcp": {}}
    assert d["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Retries": 2}


# -- Go helpers -------------------------------------------------------------------------------

def test_go_duration():
    assert parse_go_duration("1h30m") == 5400 * S
    assert parse_go_duration("1.5s") == 1_500_000_000
    assert parse_go_duration("300ms") == 300_000_000
    assert parse_go_duration("2us") == parse_go_duration("2µs") == 2000
    assert parse_go_duration("-2s") == -2 * S
    assert parse_go_duration("0") == 0
    for bad, msg in (("", 'time: invalid duration ""'), ("x", 'time: invalid duration "x"'),
                     ("5", 'time: missing unit in duration "5"'),
                     ("5d", 'time: unknown unit "d" in duration "5d"')):
        with pytest.raises(ChangeError, match="^" + msg.replace("(", r"\(") + "$"):
            parse_go_duration(bad)


def test_go_quote():
    assert go_quote('a"b\\c\n\x01é') == '"a\\"b\\\\c\\n\\x01é"'


def test_huge_change_list_is_refused():
    err(["LABEL a=" + "x" * (2 << 20)])
