# Attune's warm python interpreter (crates/worker/src/runners/warm.rs): imports one action
# module once, then calls its entry function once per execution the worker sends.
#
# Started as `python -u -c <this> <module path> <function>`. Channels:
# - stdin: requests from the worker, one JSON line each:
#   {"out": fifo, "err": fifo, "doc": <input document>, "env": {name: value}}
# - stdout (saved as `ctl`): answers, one JSON line each: {"started": true} once the
#   call's stdout/stderr are the fifos, then {"exit": code, "cpu": seconds} when it ended.
# - stderr: this interpreter's own errors (an import that failed, a broken request).
# Between calls fds 1 and 2 point at /dev/null: nothing written then reaches any
# execution's output. During a call they are the call's own fifos, opened here.
import importlib.util, io, json, os, resource, sys, traceback

path, func_name = sys.argv[1], sys.argv[2]
ctl_in = os.fdopen(os.dup(0), "rb")
ctl = os.fdopen(os.dup(1), "wb", buffering=0)
own_err = os.dup(2)
null = os.open(os.devnull, os.O_RDWR)
os.dup2(null, 0)


def answer(obj):
    ctl.write(json.dumps(obj).encode("utf-8") + b"\n")


spec = importlib.util.spec_from_file_location("attune_action", path)
module = importlib.util.module_from_spec(spec)
sys.modules["attune_action"] = module
# The import's own output goes to the worker's log side (our stderr), not an execution.
os.dup2(own_err, 1)
spec.loader.exec_module(module)
func = getattr(module, func_name, None)
if not callable(func):
    sys.stderr.write("attune: %s defines no function %s(params)\n" % (path, func_name))
    sys.exit(2)
try:
    import attune as _attune_helper
except ImportError:
    _attune_helper = None
os.dup2(null, 1)
os.dup2(null, 2)
answer({"ready": True})

previous_env = []


def serve_one():
    global previous_env
    line = ctl_in.readline()
    if not line:
        return False
    req = json.loads(line)
    doc = req["doc"]
    for name in previous_env:
        os.environ.pop(name, None)
    previous_env = list(req.get("env", {}))
    os.environ.update(req.get("env", {}))
    out = os.open(req["out"], os.O_WRONLY)
    err = os.open(req["err"], os.O_WRONLY)
    os.dup2(out, 1)
    os.dup2(err, 2)
    os.close(out)
    os.close(err)
    answer({"started": True})
    code = 0
    try:
        sys.stdin = io.StringIO(json.dumps(doc))
        if _attune_helper is not None:
            _attune_helper._init(doc.get("context"))
        result = func(doc.get("parameters", {}))
        if result is not None:
            sys.stdout.flush()
            print(json.dumps(result, default=str))
    except SystemExit as e:
        if e.code is None:
            code = 0
        elif isinstance(e.code, int):
            code = e.code
        else:
            sys.stderr.write(str(e.code) + "\n")
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        pass
    os.dup2(null, 1)
    os.dup2(null, 2)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    answer({"exit": code, "cpu": usage.ru_utime + usage.ru_stime})
    return True


try:
    while serve_one():
        pass
except BaseException:
    # The server's own failure (not an action's): on its own stderr, for the worker.
    os.write(own_err, traceback.format_exc().encode("utf-8", "replace"))
    raise
