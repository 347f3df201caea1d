"""The live sweep line of `caliban run --max_parallel K` (caliban.docker.scheduler).

A terminal is simulated: erasing the line ("\\r" + "\\x1b[K") drops what the
current line holds, "\\n" keeps it. Whatever K threads print, the kept lines
are exactly theirs, and the sweep line never ends up inside one of them.
"""

import io
import threading

from caliban.docker.scheduler import _LiveLine


class Terminal(io.StringIO):
    def isatty(self):
        return True


def screen(transcript: str) -> tuple[list[str], str]:
    """(lines kept in the scroll-back, what the last line shows)."""
    kept, current = [], ""
    for i, piece in enumerate(transcript.split("\r\x1b[K")):
        if i:
            current = ""
        *done, current_tail = (current + piece).split("\n")
        kept += done
        current = current_tail
    return kept, current


def test_job_lines_stay_whole_and_the_sweep_line_stays_at_the_bottom():
    term = Terminal()
    live = _LiveLine(term, term, total=8)
    live.update(running=4, done=0, failed=0, taken=4)

    def job(n):
        for i in range(200):
            (live.stdout if i % 2 else live.stderr).write(f"[{n}/8] line {i}\n")
            if i % 50 == 0:
                live.update(running=4, done=i // 50, failed=0, taken=4)

    threads = [threading.Thread(target=job, args=(n,)) for n in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    kept, bottom = screen(term.getvalue())
    assert sorted(kept) == sorted(f"[{n}/8] line {i}" for n in range(1, 5) for i in range(200))
    assert bottom.startswith("[sweep] 4 running, ") and bottom.endswith(", 4 waiting")
    live.update(running=0, done=8, failed=1, taken=8)
    assert screen(term.getvalue())[1] == "[sweep] 0 running, 8 done (1 failed), 0 waiting"
    live.close()
    assert screen(term.getvalue())[1] == ""


def test_nothing_is_drawn_on_a_pipe_or_in_a_file():
    out, err = io.StringIO(), io.StringIO()
    live = _LiveLine(out, err, total=2)
    live.update(running=2, done=0, failed=0, taken=2)
    live.stdout.write("[1/2] hello\n")
    live.stderr.write("==> job 1/2 succeeded (1 running)\n")
    live.close()
    assert out.getvalue() == "[1/2] hello\n"
    assert err.getvalue() == "==> job 1/2 succeeded (1 running)\n"


def test_only_a_terminal_on_both_streams_gets_the_line():
    term = Terminal()
    live = _LiveLine(io.StringIO(), term, total=1)  # stdout redirected to a file
    live.update(running=1, done=0, failed=0, taken=1)
    assert term.getvalue() == ""
