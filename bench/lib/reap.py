#!/usr/bin/env python3
"""reap.py OUT CMD...: run CMD as a child subreaper, wait for it and for
every process it left behind (a detached background worker), and write to
OUT the CPU time (user + system, milliseconds) of all of them."""
import ctypes
import os
import resource
import sys

PR_SET_CHILD_SUBREAPER = 36
ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
out, cmd = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    os.execvp(cmd[0], cmd)
status = 0
while True:
    try:
        p, s = os.wait()
    except ChildProcessError:
        break
    if p == pid:
        status = s
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(out, "w") as f:
    f.write("%.0f\n" % ((ru.ru_utime + ru.ru_stime) * 1000))
sys.exit(os.waitstatus_to_exitcode(status))
