"""The runtime's create handshake with the init, in every order the two init processes can
send their messages: stage 1 reports pid 1's pid after forking it, and pid 1 may get as far
as its "hooks" message first (seen in CI: the record then had no pid and `start` saw the
container as stopped)."""

from __future__ import annotations

from bosun.runtime.create import handshake


class Init:
    """Stage 1 and pid 1 as a script of what reaches the runtime's end of the channel:
    pid 1 sends "ready" only once the runtime answered its "hooks" with "hooks-done"."""

    def __init__(self, first: list[str]):
        self.inbox = [{"t": t, "pid": 4242} if t == "pid" else {"t": t} for t in first]
        self.calls: list[str] = []

    def recv(self, *kinds):
        msg = self.inbox.pop(0)
        assert msg["t"] in kinds
        return msg

    def on_userns(self):
        self.calls.append("userns")

    def on_pid(self, pid):
        assert pid == 4242
        self.calls.append("pid")

    def on_hooks(self):
        self.calls.append("hooks")
        # hooks-done: pid 1 finishes and reports; a late stage 1's pid comes after that
        self.inbox.append({"t": "ready"})


def run(init: Init) -> list[str]:
    handshake(init.recv, init.on_userns, init.on_pid, init.on_hooks)
    assert init.inbox == []
    return init.calls


def test_the_usual_order():
    assert run(Init(["pid", "hooks"])) == ["pid", "hooks"]


def test_pid_1_outruns_stage_1():
    # "hooks" before "pid": the hooks (and the record) must not run without the pid
    assert run(Init(["hooks", "pid"])) == ["pid", "hooks"]


def test_a_user_namespace_first():
    assert run(Init(["userns", "hooks", "pid"])) == ["userns", "pid", "hooks"]
