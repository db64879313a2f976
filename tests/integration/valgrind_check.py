"""Valgrind memcheck for brokers with the plugin: the command line and the log check.

A broker runs under valgrind when a test asks for it (test_broker.py) or when
TWIN_VALGRIND=1 puts every broker of the suite under it (conftest.py). Its log
is split into records (one error or one loss record each), and a record fails
the test when it is a finding AND has a frame in our code (the plugin or the
store): mosquitto, OpenSSL, libc and LMDB are not ours to fix here.

Findings:
  - leaks: "definitely lost", "indirectly lost" and "possibly lost". At a clean
    shutdown the plugin has freed everything it allocated (its cleanup runs
    before valgrind's leak check), so even a "possibly lost" block of ours (only
    an interior pointer to it left) is memory it forgot. "Still reachable" is
    not reported (--show-leak-kinds): that is mosquitto's and OpenSSL's
    process-lifetime memory.
  - invalid accesses: invalid read/write/free, mismatched free, overlapping
    memcpy, fishy allocation sizes, jumps to invalid addresses, and any use of
    uninitialised memory (conditional jump, use of a value, syscall parameter).

Not ours: LMDB writes whole pages with pwrite/writev, and their unused tails
or struct padding may be uninitialised ("Syscall param pwrite64(buf) points to
uninitialised byte(s)") although the stack runs through our commit. Such a
syscall record whose innermost frame outside libc is LMDB is not a finding of
ours; every other record with an LMDB frame under ours still is.

A broker killed with SIGKILL never reaches the leak check: its log has the
errors found until then and no leak records, and check_log(..., leaks=False)
checks just those.
"""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

VALGRIND_ARGS = (
    "--tool=memcheck",
    "--leak-check=full",
    "--show-leak-kinds=definite,indirect,possible",
    "--fullpath-after=",  # full source paths, to tell our frames apart
    # The broker dlcloses the plugin before the leak check: keep its symbols,
    # or leak stacks show "???" instead of our functions.
    "--keep-debuginfo=yes",
    "--num-callers=40",
    # Valgrind's own threads of the broker never write to the terminal.
    "--child-silent-after-fork=yes",
)


def valgrind_command(log_path, extra=()):
    """The command prefix that runs a program under memcheck, logging to log_path."""
    return ["valgrind", *VALGRIND_ARGS, *extra, f"--log-file={log_path}"]


def valgrind_records(text):
    """Valgrind's log split into records (one error or loss record each)."""
    records, current = [], []
    for line in text.splitlines():
        body = re.sub(r"^==\d+==\s?", "", line)
        if body.strip():
            current.append(body)
        elif current:
            records.append("\n".join(current))
            current = []
    if current:
        records.append("\n".join(current))
    return records


LEAK_RECORD = re.compile(r"are (definitely|indirectly|possibly) lost in loss record")
ACCESS_RECORD = re.compile(
    r"^(Invalid (read|write|free|delete|realloc)|Mismatched free|"
    r"Source and destination overlap|Argument '\w+' of function \w+ has a fishy value|"
    r"Jump to the invalid address|Conditional jump or move depends on uninitialised|"
    r"Use of uninitialised value|Syscall param .* (points to|contains) uninitialised|"
    r"Process terminating with default action of signal \d+ \(SIG(SEGV|BUS|ILL|FPE|ABRT)\))",
    re.MULTILINE,
)
# Kept for test_broker.py's own checks: the record kinds that fail a test.
BAD_RECORD = re.compile(f"{LEAK_RECORD.pattern}|{ACCESS_RECORD.pattern}", re.MULTILINE)

OUR_FRAME = re.compile(
    r"mosquitto_twin\.so|: (mosquitto_plugin_|twin_|plg_|db_(?!_))\w* \(|"
    + "|".join(re.escape(f"{REPO}/{d}/") for d in ("plugin", "store"))
)
FRAME = re.compile(r"^\s*(at|by) 0x[0-9A-Fa-f]+: (.*)$")
LMDB_FRAME = re.compile(r"liblmdb|: mdb_\w+ \(|/mdb\.c:|/midl\.c:")
LMDB_PADDING = re.compile(r"^Syscall param (pwrite64|pwrite|pwritev|writev|write)\(\S+\) points to uninitialised")


def is_ours(record):
    """A record whose stack passes through the plugin or the store."""
    return OUR_FRAME.search(record) is not None


def first_stack(record):
    """The frames of a record's first stack (the error's own, not the block's)."""
    frames = []
    for line in record.splitlines()[1:]:
        m = FRAME.match(line)
        if not m:
            if frames:
                break
            continue
        frames.append(m.group(2))
    return frames


def is_lmdb_padding(record):
    """LMDB writing a page whose padding was never initialised: not ours."""
    if not LMDB_PADDING.match(record):
        return False
    for frame in first_stack(record):
        if OUR_FRAME.search(frame):
            return False
        if LMDB_FRAME.search(frame):
            return True
    return False


def findings(text, leaks=True):
    """The records of a valgrind log that are findings in our code.

    leaks=False: only invalid accesses (a broker killed before its leak check).
    """
    bad = []
    for record in valgrind_records(text):
        if LEAK_RECORD.search(record):
            if leaks and is_ours(record):
                bad.append(record)
        elif ACCESS_RECORD.search(record) and is_ours(record) and not is_lmdb_padding(record):
            bad.append(record)
    return bad


def check_log(log_path, leaks=True):
    """Problems with one valgrind log: findings of ours, or a missing summary.

    leaks: the process exited on its own or by SIGTERM, so valgrind ran its leak
    check and wrote its summary; False for a process killed with SIGKILL.
    """
    path = Path(log_path)
    if not path.exists():
        return [f"{path}: no valgrind log"]
    text = path.read_text(errors="replace")
    problems = findings(text, leaks=leaks)
    if leaks and "ERROR SUMMARY" not in text:
        problems.append(f"{path}: no ERROR SUMMARY (valgrind did not finish):\n{text[-2000:]}")
    return problems


def summary(text):
    """(errors, contexts) from a log's ERROR SUMMARY line, or None."""
    m = re.search(r"ERROR SUMMARY: ([\d,]+) errors from ([\d,]+) contexts", text)
    if not m:
        return None
    return tuple(int(g.replace(",", "")) for g in m.groups())
