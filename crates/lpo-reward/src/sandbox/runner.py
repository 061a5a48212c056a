# lpo sandbox runner (python3 -c, argv: audit ctl-fd): see runner.rs.
import os, sys

def _lpo_hook(ctl, root):
    import stat
    write, getcwd, getpid, lstat, readlink = os.write, os.getcwd, os.getpid, os.lstat, os.readlink
    fsdecode, islnk, PathLike = os.fsdecode, stat.S_ISLNK, os.PathLike
    prefix = root + "/"
    writing_flags = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
    always = frozenset(["/dev/null", "/dev/stdout", "/dev/stderr"])
    banned = frozenset([
        "os.system", "os.fork", "os.forkpty", "os.exec", "os.posix_spawn", "os.spawn",
        "os.startfile", "subprocess.Popen", "pty.spawn", "os.killpg", "os.chroot",
        "os.unshare", "os.setns", "sys.remote_exec", "sqlite3.enable_load_extension",
        "sqlite3.load_extension",
    ])
    # event: (indices of paths that must stay inside, indices of dir_fd arguments)
    paths = {
        "os.remove": ((0,), (1,)), "os.rmdir": ((0,), (1,)), "os.mkdir": ((0,), (2,)),
        "os.rename": ((0, 1), (2, 3)), "os.link": ((0, 1), (2, 3)), "os.symlink": ((1,), (2,)),
        "os.truncate": ((0,), ()), "os.chmod": ((0,), (2,)), "os.chown": ((0,), (3,)),
        "os.utime": ((0,), (3,)), "os.mkfifo": ((0,), (2,)), "os.mknod": ((0,), (3,)),
        "os.setxattr": ((0,), ()), "os.removexattr": ((0,), ()), "os.chflags": ((0,), ()),
        "os.lchflags": ((0,), ()), "shutil.rmtree": ((0,), (1,)), "shutil.copyfile": ((1,), ()),
        "shutil.copymode": ((1,), ()), "shutil.copystat": ((1,), ()), "shutil.chown": ((0,), ()),
        "shutil.make_archive": ((0,), ()), "shutil.unpack_archive": ((1,), ()),
        "sqlite3.connect": ((0,), ()),
    }
    refused = [0]

    def refuse(what):
        if refused[0] < 16:
            refused[0] += 1
            try:
                write(ctl, ("FORBIDDEN " + what.replace("\n", " ")[:300] + "\n").encode("utf-8", "replace"))
            except Exception:
                pass
        raise PermissionError("lpo sandbox: " + what + " is not allowed")

    def show(path):
        if isinstance(path, bytes):
            return fsdecode(path)
        return path if isinstance(path, str) else type(path).__name__

    def resolve(path):
        if not path.startswith("/"):
            path = getcwd() + "/" + path
        done, todo, hops = [], path.split("/"), 0
        todo.reverse()
        while todo:
            part = todo.pop()
            if part == "" or part == ".":
                continue
            if part == "..":
                if done:
                    done.pop()
                continue
            current = "/" + "/".join(done + [part])
            try:
                mode = lstat(current).st_mode
            except (OSError, ValueError):
                done.append(part)
                continue
            if islnk(mode):
                hops += 1
                if hops > 40:
                    return None
                target = readlink(current)
                if target.startswith("/"):
                    done = []
                more = target.split("/")
                more.reverse()
                todo.extend(more)
            else:
                done.append(part)
        return "/" + "/".join(done)

    def inside(path):
        if path is None or isinstance(path, int):
            return True
        try:
            if isinstance(path, PathLike):
                path = path.__fspath__()
            if isinstance(path, bytes):
                path = fsdecode(path)
            if not isinstance(path, str):
                return False
            if path in always or path == ":memory:" or path == "":
                return True
            resolved = resolve(path)
        except Exception:
            return False
        return resolved is not None and (resolved == root or resolved.startswith(prefix))

    def hook(event, args):
        if event in banned or event.startswith("ctypes."):
            refuse(event)
        if event.startswith("socket.") and event != "socket.__new__":
            refuse(event)
        if event == "os.kill":
            if not (len(args) > 0 and args[0] == getpid()):
                refuse(event)
            return
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None, None))[:3]
            if isinstance(mode, str):
                writes = "w" in mode or "a" in mode or "x" in mode or "+" in mode
            else:
                writes = isinstance(flags, int) and (flags & writing_flags) != 0
            if writes and not inside(path):
                refuse("open for writing outside the sandbox: " + show(path))
            return
        spec = paths.get(event)
        if spec is not None:
            for i in spec[1]:
                if i < len(args) and args[i] is not None and args[i] != -1:
                    refuse(event + " relative to a directory descriptor")
            for i in spec[0]:
                if i < len(args) and not inside(args[i]):
                    refuse(event + " outside the sandbox: " + show(args[i]))

    return hook

def _lpo_run():
    audit, ctl, write = sys.argv[1] == "1", int(sys.argv[2]), os.write
    secret = os.read(0, 256).decode("ascii", "replace").strip()
    with open("program.py", "rb") as f:
        source = f.read()
    code = compile(source, "program.py", "exec", dont_inherit=True)
    if audit:
        if hasattr(sys, "addaudithook"):
            sys.addaudithook(_lpo_hook(ctl, os.path.realpath(os.getcwd())))
        else:
            write(ctl, b"NOHOOK\n")
    main = type(sys)("__main__")
    main.__file__ = "program.py"
    main.__builtins__ = __builtins__
    sys.modules["__main__"] = main
    sys.argv = ["program.py"]
    exec(code, main.__dict__)
    write(ctl, ("DONE " + secret + "\n").encode("ascii"))

_lpo_run()
