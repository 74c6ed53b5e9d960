"""linux.personality, process.ioPriority and process.scheduler, seen from inside."""


def _run(rt, bundles, cid, script, edit):
    b = bundles.make(["sh", "-c", script], edit=edit)
    return rt("run", "--bundle", b, cid, check=False)


def test_personality_linux32(rt, bundles, cid):
    p = _run(rt, bundles, cid, "uname -m",
             lambda c: c["linux"].__setitem__("personality", {"domain": "LINUX32"}))
    assert p.stdout.strip() in ("i686", "armv8l", "armv7l"), p.stdout


def test_io_priority_and_scheduler(rt, bundles, cid):
    def edit(c):
        c["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_BE", "priority": 6}
        c["process"]["scheduler"] = {"policy": "SCHED_BATCH", "nice": 7}
    p = _run(rt, bundles, cid, "ionice -p $$; grep '^policy' /proc/self/sched; "
             "cut -d' ' -f19 /proc/self/stat", edit)
    lines = p.stdout.split("\n")
    assert lines[0] == "best-effort: prio 6", p.stdout
    assert lines[1].split()[-1] == "3"  # SCHED_BATCH
    assert lines[2] == "7"  # nice


def test_bad_scheduling_input_is_rejected(rt, bundles, cid):
    for edit, word in (
        (lambda c: c["process"].__setitem__("scheduler", {"policy": "SCHED_FAST"}), "SCHED_FAST"),
        (lambda c: c["process"].__setitem__("ioPriority", {"class": "IOPRIO_CLASS_BE",
                                                           "priority": 9}), "0..7"),
        (lambda c: c["linux"].__setitem__("intelRdt", {"closID": "x"}), "intelRdt"),
    ):
        p = _run(rt, bundles, cid, "true", edit)
        assert p.returncode == 1 and word in p.stderr and "Traceback" not in p.stderr
    assert rt("list", "-q").stdout == ""
