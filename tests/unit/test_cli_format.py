"""`--format` templates (Go text/template subset), tables and go-units output."""

from __future__ import annotations

import io

import pytest

from bosun.cli.containers import PS_TITLES, PsRow, go_quote
from bosun.cli.format import (Template, TemplateError, bytes_size, go_float, go_str,
                              human_duration, human_size, prepare, render, tabwrite)

DOC = {"Name": "/web", "State": {"Running": True, "Paused": False, "ExitCode": 0},
       "Config": {"Cmd": ["sleep", "300"], "Labels": {"b": "2", "a": "1"}, "Env": ["A=1"]},
       "Mounts": [], "Size": 1.5, "Count": 3}


@pytest.mark.parametrize("src,want", [
    ("{{.Name}}", "/web"),
    ("{{.State.Running}} {{.State.ExitCode}}", "true 0"),
    ("{{json .Config.Cmd}}", '["sleep","300"]'),
    ("{{.Config.Labels}}", "map[a:1 b:2]"),
    ("{{.Config.Cmd}}", "[sleep 300]"),
    ('{{index .Config.Labels "a"}}|{{index .Config.Labels "zz"}}', "1|"),
    ("{{.Nope}}", "<no value>"),
    ("{{if .State.Paused}}p{{else if .State.Running}}r{{else}}x{{end}}", "r"),
    ("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}", "a=1;b=2;"),
    ("{{range .Mounts}}m{{else}}none{{end}}", "none"),
    ("{{range .Config.Cmd}}[{{.}}]{{end}}", "[sleep][300]"),
    ("{{with .State}}{{.ExitCode}}{{end}}", "0"),
    ('{{join .Config.Cmd ","}} {{upper .Name | lower}} {{len .Config.Env}}', "sleep,300 /web 1"),
    ('{{printf "%s:%d" .Name .Count}} {{println "x"}}', "/web:3 x\n"),
    ("{{.Size}} {{(index .Config.Cmd 1)}} {{$.Name}}", "1.5 300 /web"),
    ('{{eq .Count 3}} {{ne .Name "/web"}} {{not .State.Running}} {{and 1 0}} {{or 0 2}}',
     "true false false 0 2"),
    ("a {{- .Count -}} b", "a3b"),
    ('{{split "a:b" ":"}} {{title "ab"}} {{truncate .Name 2}}', "[a b] Ab /w"),
])
def test_templates(src, want):
    assert Template(src).render(DOC) == want


@pytest.mark.parametrize("src", ["{{.Name", "{{if .Name}}x", "{{end}}", "{{frob .Name}}",
                                 '{{"unterminated}}'])
def test_template_errors(src):
    with pytest.raises(TemplateError):
        Template(src).render(DOC)


def test_nil_pointer_is_an_error():
    with pytest.raises(TemplateError, match="nil pointer"):
        Template("{{.Nope.Deeper}}").render(DOC)


def test_prepare_turns_escapes_into_tabs():
    assert prepare("table {{.ID}}\\t{{.Names}}") == (True, "{{.ID}}\t{{.Names}}")
    assert prepare(" {{.ID}}\\n") == (False, "{{.ID}}\n")


def test_tabwriter_as_go():
    # minwidth 10, padding 3: a short column is 10 wide, a long one its widest cell + 3
    assert tabwrite("A\tBB\tC\nxxxxxxxxxxxxx\ty\tz") == \
        "A               BB        C\nxxxxxxxxxxxxx   y         z"
    # a line without tabs ends the column block (docker version's sections)
    text = tabwrite("Client:\n Version:\t1\n\nServer:\n  API version:\t2\n", 20, 1)
    assert text == "Client:\n Version:           1\n\nServer:\n  API version:      2\n"


def test_ps_rows_and_table():
    c = {"Id": "a" * 64, "Names": ["/web", "/other/alias"], "Image": "busybox",
         "Command": "sh -c 'while true; do sleep 1; done'", "Created": 1000, "State": "running",
         "Status": "Up 2 minutes", "Ports": [{"PrivatePort": 80, "Type": "tcp"},
                                             {"PrivatePort": 443, "PublicPort": 8443,
                                              "IP": "0.0.0.0", "Type": "tcp"}],
         "Labels": {"x": "1"}, "SizeRw": 0, "SizeRootFs": 1982411}
    row = PsRow(c, True, 1000 + 150)
    assert row.ID == "a" * 12 and row.Names == "web"
    assert row.Command == '"sh -c \'while true; …"'  # 19 characters and …
    assert row.RunningFor == "2 minutes ago"
    assert row.Ports == "80/tcp, 0.0.0.0:8443->443/tcp"
    assert row.Size == "0B (virtual 1.98MB)"
    assert PsRow(c, False, 0).Names == "web,other/alias"
    buf = io.StringIO()
    render("table {{.ID}}\t{{.Image}}\t{{.Names}}", [row], PS_TITLES, buf)
    assert buf.getvalue() == ("CONTAINER ID   IMAGE     NAMES\n"
                              "aaaaaaaaaaaa   busybox   web\n")
    buf = io.StringIO()
    render('{{json .}}', [row], PS_TITLES, buf)
    assert '"Names":"web"' in buf.getvalue() and '"Ports":"80/tcp, ' in buf.getvalue()


def test_go_values():
    assert [go_float(v) for v in (1e6, 1234567.0, 100000.0, 0.5, 1e-05, 3.0)] == \
        ["1e+06", "1.234567e+06", "100000", "0.5", "1e-05", "3"]
    assert go_str(None) == "<nil>" and go_str([1, True]) == "[1 true]"
    assert go_quote('a "b"\n') == '"a \\"b\\"\\n"'


def test_go_units():
    assert [human_duration(s) for s in (0.5, 1, 59, 61, 3000, 3600, 7200, 3 * 86400,
                                        20 * 86400, 90 * 86400, 800 * 86400)] == [
        "Less than a second", "1 second", "59 seconds", "About a minute", "50 minutes",
        "About an hour", "2 hours", "3 days", "2 weeks", "3 months", "2 years"]
    assert [human_size(n) for n in (0, 999, 1982411, 4.26e9)] == ["0B", "999B", "1.98MB",
                                                                  "4.26GB"]
    assert bytes_size(25276514304) == "23.54GiB"
