"""`bosun`'s docker-style flag parser: spellings, bundling, errors as docker prints them."""

from __future__ import annotations

import pytest

from bosun.cli.flags import BOOL, INT, LIST, STR, Command, Flag, Usage, parse

RUN = Command("run", "[OPTIONS] IMAGE [COMMAND] [ARG...]", "Create and run", [
    Flag("detach", "d", BOOL, ""), Flag("interactive", "i", BOOL, ""),
    Flag("tty", "t", BOOL, ""), Flag("env", "e", LIST, ""), Flag("name", None, STR, ""),
    Flag("sig-proxy", None, BOOL, "", True), Flag("publish", "p", LIST, "")],
    nargs=(1, None), interspersed=False)
PS = Command("ps", "[OPTIONS]", "List", [Flag("all", "a", BOOL, ""),
                                         Flag("last", "n", INT, "", -1)], nargs=(0, 0))
RM = Command("rm", "[OPTIONS] CONTAINER [CONTAINER...]", "Remove",
             [Flag("force", "f", BOOL, "")], nargs=(1, None))
RENAME = Command("rename", "CONTAINER NEW_NAME", "Rename", [], nargs=(2, 2))


def test_defaults_filled_in():
    opts, args = parse(RUN, ["busybox"])
    assert opts == {"detach": False, "interactive": False, "tty": False, "env": [],
                    "name": None, "sig-proxy": True, "publish": [], "help": False}
    assert args == ["busybox"]


@pytest.mark.parametrize("argv", [["-it"], ["-i", "-t"], ["--interactive", "--tty"],
                                  ["-ti"], ["--tty=true", "-i=1"]])
def test_bool_spellings(argv):
    opts, _ = parse(RUN, argv + ["img"])
    assert opts["interactive"] and opts["tty"]


def test_values_every_way_docker_takes_them():
    opts, args = parse(RUN, ["-e", "A=1", "-eB=2", "-e=C=3", "--env", "D=4", "--env=E=5",
                             "--name", "n", "-dp", "80", "img"])
    assert opts["env"] == ["A=1", "B=2", "C=3", "D=4", "E=5"]
    assert opts["name"] == "n" and opts["detach"] and opts["publish"] == ["80"]
    assert args == ["img"]


def test_false_bool_and_default_true():
    assert parse(RUN, ["--sig-proxy=false", "img"])[0]["sig-proxy"] is False


def test_run_stops_at_the_image_but_rm_does_not():
    opts, args = parse(RUN, ["-d", "img", "sh", "-c", "--name", "x"])
    assert args == ["img", "sh", "-c", "--name", "x"] and opts["name"] is None
    opts, args = parse(RM, ["a", "-f", "b"])
    assert opts["force"] and args == ["a", "b"]
    assert parse(RM, ["-f", "--", "-weird"])[1] == ["-weird"]


def test_int_flag():
    assert parse(PS, ["-n", "3"])[0]["last"] == 3
    with pytest.raises(Usage) as e:
        parse(PS, ["-n", "x"])
    assert str(e.value) == ('invalid argument "x" for "-n, --last" flag: strconv.ParseInt: '
                            'parsing "x": invalid syntax')
    assert e.value.code == 125


def test_unknown_flags_render_as_docker():
    with pytest.raises(Usage) as e:
        parse(RUN, ["--x", "img"])
    assert e.value.code == 125
    assert e.value.render() == ("unknown flag: --x\n\nUsage:  bosun run [OPTIONS] IMAGE "
                                "[COMMAND] [ARG...]\n\nRun 'bosun run --help' for more "
                                "information\n")
    with pytest.raises(Usage, match=r"^unknown shorthand flag: 'z' in -iz$"):
        parse(RUN, ["-iz", "img"])
    with pytest.raises(Usage, match=r"^flag needs an argument: --name$"):
        parse(RUN, ["--name"])
    with pytest.raises(Usage, match=r"^flag needs an argument: 'e' in -e$"):
        parse(RUN, ["-e"])


@pytest.mark.parametrize("cmd,argv,message,more", [
    (RUN, [], "'bosun run' requires at least 1 argument", "See"),
    (PS, ["x"], "'bosun ps' accepts no arguments", "Run"),
    (RENAME, ["a"], "'bosun rename' requires 2 arguments", "Run"),
])
def test_argument_counts(cmd, argv, message, more):
    with pytest.raises(Usage) as e:
        parse(cmd, argv)
    assert e.value.code == 1
    text = e.value.render()
    assert text.startswith(f"bosun: {message}\n\nUsage:  bosun {cmd.path} {cmd.usage}\n\n")
    assert text.endswith(f"{more} 'bosun {cmd.path} --help' for more information\n")


def test_help_skips_argument_checks():
    opts, _ = parse(RUN, ["--help"])
    assert opts["help"]
    text = RUN.help_text()
    assert "Usage:  bosun run [OPTIONS] IMAGE [COMMAND] [ARG...]" in text
    assert "  -e, --env list" in text and "      --name string" in text
