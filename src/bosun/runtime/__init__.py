"""bosun-runtime: an OCI runtime (what runc is to Docker).

The Python API mirrors the CLI verbs; each lives in its own module and is imported lazily
so that `import bosun.runtime` stays cheap:

    create(root, id, bundle, ...)   start(root, id)     run(root, id, bundle, ...)
    kill(root, id, sig, all=False)  delete(root, id, force=False)
    state(root, id)                 list_states(root)   exec_process(root, id, process, ...)
"""

_API = {
    "create": "create", "start": "start", "run": "run", "kill": "kill", "delete": "delete",
    "state": "query", "list_states": "query", "exec_process": "exec", "features": "features",
}


def __getattr__(name):
    mod = _API.get(name)
    if mod is None:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(f"bosun.runtime.{mod}"), name)
