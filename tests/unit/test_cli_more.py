"""Completion scripts from the command table, and `stats` rows as docker computes them."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from bosun.cli.completion import bash_script, fish_script, table, zsh_script
from bosun.cli.monitor import STATS_TABLE, StatsRow, event_line, redraw, render_stats

SAMPLE = {
    "id": "0123456789abcdef" * 4, "name": "/web",
    "cpu_stats": {"cpu_usage": {"total_usage": 3_000_000_000}, "system_cpu_usage": 20 * 10**9,
                  "online_cpus": 4},
    "precpu_stats": {"cpu_usage": {"total_usage": 2_000_000_000},
                     "system_cpu_usage": 10 * 10**9},
    "memory_stats": {"usage": 12 << 20, "limit": 64 << 20, "stats": {"inactive_file": 4 << 20}},
    "networks": {"eth0": {"rx_bytes": 1500, "tx_bytes": 250},
                 "eth1": {"rx_bytes": 500, "tx_bytes": 0}},
    "blkio_stats": {"io_service_bytes_recursive": [
        {"op": "Read", "value": 4096}, {"op": "write", "value": 2_000_000},
        {"op": "Total", "value": 9}]},
    "pids_stats": {"current": 3},
}


def test_stats_row_matches_dockers_arithmetic():
    r = StatsRow("web", SAMPLE)
    # 1e9 of 10e9 system nanoseconds on 4 CPUs; page cache left out of memory
    assert (r.ID, r.Name, r.CPUPerc) == ("0123456789ab", "web", "40.00%")
    assert (r.MemUsage, r.MemPerc) == ("8MiB / 64MiB", "12.50%")
    assert (r.NetIO, r.BlockIO, r.PIDs) == ("2kB / 250B", "4.1kB / 2MB", "3")
    assert StatsRow("web", SAMPLE, trunc=False).ID == SAMPLE["id"]


def test_stats_without_a_sample_and_tables():
    r = StatsRow("gone", None)
    assert (r.ID, r.CPUPerc, r.MemUsage, r.PIDs) == ("gone", "--", "-- / --", "--")
    text = render_stats(STATS_TABLE, [StatsRow("web", SAMPLE)])
    assert text.startswith("CONTAINER ID   NAME      CPU %     MEM USAGE / LIMIT   MEM %  ")
    assert render_stats("{{json .}}", [StatsRow("web", SAMPLE)]).startswith(
        '{"BlockIO":"4.1kB / 2MB","CPUPerc":"40.00%","Container":"web",')
    # in place on a terminal: home, lines cleared to their end, the rest cleared
    assert redraw("a\nb\n") == "\033[Ha\033[K\nb\033[K\n\033[J"


def test_event_line(monkeypatch):
    import time

    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    ev = {"Type": "container", "Action": "start", "timeNano": 1_700_000_000_123_456_789,
          "Actor": {"ID": "abc", "Attributes": {"name": "web", "image": "busybox"}}}
    assert event_line(ev) == "2023-11-14T22:13:20.123456789Z container start abc " \
        "(image=busybox, name=web)\n"
    monkeypatch.setenv("TZ", "CET-1")
    time.tzset()
    assert event_line(ev).startswith("2023-11-14T23:13:20.123456789+01:00 ")
    monkeypatch.undo()
    time.tzset()


def test_completion_knows_commands_and_flags():
    cmds = table()
    assert {"ps", "cp", "stats", "image prune", "system df", "container ls"} <= set(cmds)
    bash = bash_script(cmds)
    assert "complete -F _bosun bosun" in bash
    assert "'image prune') flags='--all -a --filter --force -f --help'; args=files;;" in bash
    assert "'stop') flags=" in bash and "bosun ps -a --format '{{.Names}}'" in bash
    assert zsh_script(cmds).startswith("#compdef bosun\n")
    fish = fish_script(cmds)
    assert "complete -c bosun -n '__fish_seen_subcommand_from cp' -l archive -s a" in fish
    assert "-a '(__bosun_images)'" in fish


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_bash_script_completes(tmp_path):
    script = tmp_path / "c.bash"
    script.write_text(bash_script(table()))
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "bosun").write_text("#!/bin/sh\necho web; echo db\n")  # stands in for the daemon
    (fake / "bosun").chmod(0o755)

    def complete(*words: str) -> list[str]:
        cmd = (f"PATH={fake}:$PATH; source {script}; COMP_WORDS=(bosun {' '.join(words)}); "
               f"COMP_CWORD={len(words)}; _bosun; echo \"${{COMPREPLY[@]}}\"")
        return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True,
                              check=True).stdout.split()
    assert complete("sta") == ["start", "stats"]
    assert complete("stop", "w") == ["web"]
    assert complete("image", "pr") == ["prune"]
    assert complete("system", "prune", "--vo") == ["--volumes"]
