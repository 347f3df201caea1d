"""The build context, assembled in Python as a tar stream.

Caliban images are pushed to registries that other people pull from, so what
enters the context is decided here, in three layers:

1. `.dockerignore`, then `.calibanignore` (same syntax, its lines read after
   `.dockerignore`'s), with the Docker CLI's rules (moby patternmatcher; see
   https://docs.docker.com/build/concepts/context/#dockerignore-files):
   `#` comment lines, surrounding whitespace trimmed, paths cleaned (trailing
   slashes and a leading `/` do not matter), `*` and `?` within one path
   segment, `**` across segments, `[...]` classes (`^` negates), `\\`
   escapes, `!` exceptions where the last matching pattern wins, and a
   pattern matching a parent directory excluding everything below it. Like
   the Docker CLI, an excluded directory is still walked when a `!` pattern
   literally starts with its path (docker/cli#2919 describes that rule).
   Docker compiles patterns to RE2 regexes, which run in linear time; Python's
   `re` backtracks, and `**/**/**/...` took minutes with it. Patterns are
   therefore run here as an automaton (a Thompson NFA whose state sets are
   cached as DFA states, as RE2 does): one pass over a path, O(pattern x
   path) at worst, answers both "does the path match" and "does any parent
   directory match".

2. A built-in deny list (`DENY_PATTERNS`) that a user cannot forget: dot-env
   files, SSH keys, `.netrc`, cloud CLI credential stores, `.git/`, ... Names
   are compared case-insensitively.

3. Content: every regular file is scanned while it is copied into the tar
   (the copy reads every byte anyway) for private-key headers and Google
   credential JSON, whatever the file's name, case or size. A hit rolls the
   member back out of the tar. Memory stays bounded: 1 MiB chunks plus a
   small overlap, so a marker split across two chunks is still seen.

A screened path comes back only when the user names it (or the screened
directory holding it) with a `!` pattern in `.dockerignore` or
`.calibanignore`: `!.git`, `!.env.example`, `!keys/test-key.pem`. A broad
exception such as `!src` after `**` re-includes `src/` but not the secrets
in it: only an exception that matches the screened path itself, or the
screened directory it sits in, counts as asking for it. The key given with
--cloud_key, $GOOGLE_APPLICATION_CREDENTIALS and the gcloud ADC file never
enter, exception or not.

Layout of the tar (see `caliban.docker.dockerfile`):

    Dockerfile               generated
    __caliban__/ca-bundle.crt  opt-in host CA bundle
    src/<project files>      only the paths the Dockerfile copies
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
import tarfile
import tempfile
from dataclasses import dataclass, field
from typing import Callable

from caliban.docker.dockerfile import CONTEXT_CA_BUNDLE, CONTEXT_SRC
from caliban.errors import CalibanError, UsageError

IGNORE_FILES = (".dockerignore", ".calibanignore")  # in the order their lines apply

# Marks a local --output_dir root (`caliban_outputs/` by default, inside the
# project): the results of earlier jobs, checkpoints included, would otherwise
# be copied into the next image and pushed with it. A marker file, not a
# name, so that a user's own directory called caliban_outputs is still copied.
OUTPUT_MARKER = ".caliban-output"
_MAX_IGNORE_FILE_BYTES = 1 << 20

# --------------------------------------------------------------------------
# .dockerignore parsing (pure)


def _clean(path: str) -> str:
    """Go's filepath.Clean for slash paths."""
    cleaned = posixpath.normpath(path) if path else "."
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


def parse_dockerignore(text: str) -> list[str]:
    """Patterns from .dockerignore text, normalized as the Docker CLI does."""
    patterns = []
    for lineno, raw in enumerate(text.splitlines()):
        if lineno == 0:
            raw = raw.lstrip("\ufeff")
        if raw.startswith("#"):
            continue
        pattern = raw.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = _clean(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        patterns.append("!" + pattern if invert else pattern)
    return patterns


# --------------------------------------------------------------------------
# Pattern matching in linear time (pure)

# Token kinds of a compiled pattern. Each consumes characters as its regex
# counterpart in moby's translation does.
_LIT = 0  # one given character
_ONE = 1  # ?   -> [^/]
_CLASS = 2  # [...] -> one character in (or, with ^, not in) the ranges
_SEG = 3  # *   -> [^/]*
_ANY = 4  # trailing ** -> .*
_DIRS = 5  # **  -> (.*/)?  : nothing, or anything ending with a slash

_MAX_DFA_STATES = 4096  # per pattern; the cache is dropped when it grows past this


class _Automaton:
    """Token sequences (alternatives) run as one NFA whose state sets are
    memoized as DFA states. An alternative of n tokens owns 2n+1 states:
    "before token i" for i < n, "matched" (n), and the inside of the `(.*/)?`
    of each _DIRS token."""

    _INNER, _ACCEPT = -1, -2

    def __init__(self, alternatives: list[list[tuple]]):
        self._kind: list[int] = []  # token kind, _INNER or _ACCEPT
        self._token: list[tuple | None] = []
        self._exit: list[int] = []  # where a state goes once its token is consumed
        self._inner: dict[int, int] = {}  # _DIRS state -> its inside
        starts = []
        for tokens in alternatives:
            base = len(self._kind)
            starts.append(base)
            for i, token in enumerate(tokens):
                self._kind.append(token[0])
                self._token.append(token)
                self._exit.append(base + i + 1)
            self._kind.append(self._ACCEPT)
            self._token.append(None)
            self._exit.append(-1)
            for i, token in enumerate(tokens):
                if token[0] == _DIRS:
                    self._inner[base + i] = len(self._kind)
                    self._kind.append(self._INNER)
                    self._token.append(None)
                    self._exit.append(base + i + 1)
        self._starts = starts
        self._reset()

    def _reset(self) -> None:
        self._sets: list[frozenset] = []
        self._ids: dict[frozenset, int] = {}
        self._accepting: list[bool] = []
        self._next: dict[tuple[int, str], int] = {}
        self.dead = self._intern(set())
        self.start = self._intern(set(self._starts))

    def _intern(self, states: set) -> int:
        """The DFA state for the epsilon closure of `states`."""
        todo = list(states)
        while todo:
            s = todo.pop()
            if self._kind[s] in (_SEG, _ANY, _DIRS):
                for t in (self._exit[s], self._inner.get(s)):
                    if t is not None and t not in states:
                        states.add(t)
                        todo.append(t)
        key = frozenset(states)
        sid = self._ids.get(key)
        if sid is None:
            sid = len(self._sets)
            self._ids[key] = sid
            self._sets.append(key)
            self._accepting.append(any(self._kind[s] == self._ACCEPT for s in key))
        return sid

    def _step(self, sid: int, ch: str) -> int:
        nxt: set = set()
        for s in self._sets[sid]:
            kind = self._kind[s]
            if kind == _LIT:
                if ch == self._token[s][1]:
                    nxt.add(self._exit[s])
            elif kind == _ONE:
                if ch != "/":
                    nxt.add(self._exit[s])
            elif kind == _CLASS:
                token = self._token[s]
                inside = any(lo <= ch <= hi for lo, hi in token[2])
                if inside != token[1]:
                    nxt.add(self._exit[s])
            elif kind == _SEG:
                if ch != "/":
                    nxt.add(s)
            elif kind == _ANY:
                nxt.add(s)
            elif kind == self._INNER:
                nxt.add(s)
                if ch == "/":
                    nxt.add(self._exit[s])
        target = self._intern(nxt)
        self._next[(sid, ch)] = target
        return target

    def first_match(self, path: str, start: int) -> int | None:
        """The smallest k >= start, k a slash position or len(path), such that
        an alternative matches path[:k]."""
        if len(self._sets) > _MAX_DFA_STATES or len(self._next) > 16 * _MAX_DFA_STATES:
            self._reset()
        sid = self.start
        trans = self._next
        for k, ch in enumerate(path):
            if ch == "/" and k >= start and self._accepting[sid]:
                return k
            nxt = trans.get((sid, ch))
            sid = nxt if nxt is not None else self._step(sid, ch)
            if sid == self.dead:
                return None
        return len(path) if self._accepting[sid] else None


class _Pattern:
    """One cleaned pattern. Plain ones (Docker's exact, prefix `foo/**` and
    suffix `**/foo` fast paths) are string operations; the rest run on an
    automaton."""

    def __init__(self, text: str, exclusion: bool, kind: str, tokens: list[tuple]):
        self.text = text  # cleaned, without the leading "!"
        self.exclusion = exclusion
        self.kind = kind  # exact | prefix | suffix | automaton
        self.tokens = tokens  # what every kind means, as automaton input
        self._automaton = _Automaton([tokens]) if kind == "automaton" else None

    def first_match(self, path: str, start: int = 0) -> int | None:
        """As _Automaton.first_match: where the shortest matching prefix of
        `path` (the path itself or a parent directory) ends, at or past
        `start`; None when neither matches."""
        if self.kind == "exact":
            t = self.text
            if len(t) >= start and (path == t or path.startswith(t + "/")):
                return len(t)
            return None
        if self.kind == "prefix":  # "foo**": any path starting with "foo"
            p = self.text[:-2]
            if not path.startswith(p):
                return None
            slash = path.find("/", max(start, len(p)))
            return slash if slash != -1 else len(path)
        if self.kind == "suffix":  # "**foo": any path ending with "foo"; "**/foo" also "foo"
            s = self.text[2:]
            k = start
            while True:
                slash = path.find("/", k)
                end = slash if slash != -1 else len(path)
                if path.endswith(s, 0, end) or (s.startswith("/") and end == len(s) - 1 and path.startswith(s[1:])):
                    return end
                if slash == -1:
                    return None
                k = slash + 1
        return self._automaton.first_match(path, start)

    def matches(self, path: str) -> bool:
        """The path itself, not a parent, matches."""
        if self.kind == "exact":
            return path == self.text
        k = self.first_match(path, len(path))
        return k == len(path)


def _parse_class(text: str, i: int, source: str) -> tuple[tuple, int]:
    """A `[...]` class starting after the `[` at text[i-1], with Go's
    filepath.Match syntax (which Docker checks every pattern against):
    `^` negates, `\\` escapes, and an empty class, a stray `-` or `]`, or a
    missing `]` is a syntax error."""
    n = len(text)
    negated = i < n and text[i] == "^"
    if negated:
        i += 1
    ranges = []
    while True:
        if i < n and text[i] == "]" and ranges:
            return (_CLASS, negated, tuple(ranges)), i + 1
        bounds = []
        for _ in range(2):
            if i >= n:
                raise UsageError(f"{source}: bad pattern {text!r}: [ without a closing ]")
            if text[i] in "-]":
                raise UsageError(f"{source}: bad pattern {text!r}: malformed [...] character class")
            if text[i] == "\\":
                i += 1
                if i >= n:
                    raise UsageError(f"{source}: bad pattern {text!r}: malformed [...] character class")
            bounds.append(text[i])
            i += 1
            if i >= n:
                raise UsageError(f"{source}: bad pattern {text!r}: [ without a closing ]")
            if text[i] != "-" or len(bounds) == 2:
                break
            i += 1  # a range: read its upper bound
        lo, hi = bounds[0], bounds[-1]
        if lo > hi:  # Go's regexp refuses it, so Docker fails the build
            raise UsageError(f"{source}: bad pattern {text!r}: the range {lo}-{hi} runs backwards")
        ranges.append((lo, hi))


def _compile(text: str, exclusion: bool, source: str = ".dockerignore") -> _Pattern:
    """Tokens with the meaning moby's patternmatcher gives each character.

    Docker passes `[...]` and `\\x` to its regex engine, so a few odd inputs
    differ there in ways nobody writes on purpose (`\\d` is a digit class, `^`
    outside a class an anchor); here `\\x` is always the literal x, `^` is
    literal, and a class means what Go's filepath.Match says it means."""
    tokens: list[tuple] = []
    kind = "exact"
    i, n = 0, len(text)
    while i < n:
        at_start = i == 0
        ch = text[i]
        i += 1
        if ch == "*":
            if i < n and text[i] == "*":
                i += 1
                if i < n and text[i] == "/":
                    i += 1
                if i >= n:
                    tokens.append((_ANY,))
                    if kind == "exact":
                        kind = "prefix"
                    else:
                        kind = "automaton"
                else:
                    tokens.append((_DIRS,))
                    kind = "automaton"
                if at_start:
                    kind = "suffix"
            else:
                tokens.append((_SEG,))
                kind = "automaton"
        elif ch == "?":
            tokens.append((_ONE,))
            kind = "automaton"
        elif ch == "\\":
            if i >= n:
                raise UsageError(f"{source}: bad pattern {text!r}: it ends with a lone \\")
            tokens.append((_LIT, text[i]))
            i += 1
            kind = "automaton"
        elif ch == "[":
            token, i = _parse_class(text, i, source)
            tokens.append(token)
            kind = "automaton"
        elif ch == "]":
            tokens.append((_LIT, ch))
            kind = "automaton"
        else:
            tokens.append((_LIT, ch))
    if kind == "suffix" and not text.startswith("**/"):
        tokens[0] = (_ANY,)  # "**foo": Docker's fast path, any path ending in "foo"
    return _Pattern(text, exclusion, kind, tokens)


class DockerIgnore:
    """Matches slash-separated paths relative to the context root."""

    def __init__(self, patterns: list[str] = (), source: str = ".dockerignore"):
        self.patterns: list[_Pattern] = []
        self.add(patterns, source)

    def add(self, patterns: list[str], source: str) -> None:
        """Append patterns (read after those already held, so they win ties)."""
        for raw in patterns:
            p = raw.strip()
            if not p:
                continue
            exclusion = p.startswith("!")
            if exclusion:
                if len(p) == 1:
                    raise UsageError(f'{source}: illegal exclusion pattern "!"')
                p = p[1:]
            self.patterns.append(_compile(_clean(p), exclusion, source))

    @property
    def exceptions(self) -> list[_Pattern]:
        return [p for p in self.patterns if p.exclusion]

    def matches(self, path: str) -> bool:
        """True when `path` (or one of its parents) is ignored."""
        path = _clean(path)
        matched = False
        for pat in self.patterns:
            if pat.exclusion != matched:
                continue
            if pat.first_match(path) is not None:
                matched = not pat.exclusion
        return matched

    def must_descend(self, dir_path: str) -> bool:
        """Whether an ignored directory may still hold re-included files."""
        return _exception_below(self.exceptions, dir_path)


def _exception_below(exceptions: list[_Pattern], dir_path: str) -> bool:
    """The Docker CLI's test: an exception whose text starts with the directory."""
    prefix = dir_path + "/"
    return any((p.text + "/").startswith(prefix) for p in exceptions)


def load_ignore(project_dir: str) -> DockerIgnore:
    """The project's .dockerignore then .calibanignore, as one pattern list."""
    ignore = DockerIgnore()
    for name in IGNORE_FILES:
        path = os.path.join(project_dir, name)
        if not os.path.isfile(path):
            continue
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                text = fh.read(_MAX_IGNORE_FILE_BYTES + 1)
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from None
        if len(text) > _MAX_IGNORE_FILE_BYTES:
            raise UsageError(f"{path} is larger than 1 MiB; an ignore file holds patterns, one per line")
        ignore.add(parse_dockerignore(text), name)
    return ignore


# --------------------------------------------------------------------------
# The secrets screen

# Compared with the lower-cased path. Directories listed here are left out
# whole. Sources for the locations: each tool's documentation of where it
# keeps credentials (gcloud: ~/.config/gcloud with credentials.db,
# access_tokens.db, legacy_credentials/ and application_default_credentials.json;
# AWS CLI: ~/.aws/credentials; Azure CLI: ~/.azure; Docker: ~/.docker/config.json;
# pip/twine: ~/.pypirc; npm: ~/.npmrc; gsutil: ~/.boto; git: ~/.git-credentials).
DENY_PATTERNS = (
    "**/.env",
    "**/.env.*",
    "**/*.env",
    "**/.envrc",
    "**/.ssh",
    "**/id_rsa",
    "**/id_dsa",
    "**/id_ecdsa",
    "**/id_ed25519",
    "**/id_ecdsa_sk",
    "**/id_ed25519_sk",
    "**/.netrc",
    "**/_netrc",
    "**/.pypirc",
    "**/.npmrc",
    "**/.boto",
    "**/.git-credentials",
    "**/.docker/config.json",
    "**/.config/gcloud",
    "**/credentials.db",
    "**/access_tokens.db",
    "**/legacy_credentials",
    "**/application_default_credentials.json",
    "**/.aws",
    "**/.azure",
    "**/.kube",
    "**/.gnupg",
    "**/*.p12",
    "**/*.pfx",
    "**/.git",
)

# Content that marks a file as a secret. The credential "type" values are the
# ones google-auth loads from a file
# (https://googleapis.dev/python/google-auth/latest/_modules/google/auth/_default.html);
# PEM and OpenSSH private keys share the "-----BEGIN ... PRIVATE KEY" header
# (RFC 7468), which also sits in every service-account key's private_key.
_SECRET_CONTENT = re.compile(
    rb"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY"
    rb"|PuTTY-User-Key-File-[0-9]{1,3}:"
    rb'|"type"\s{0,64}:\s{0,64}"(?:service_account|authorized_user|external_account'
    rb'|external_account_authorized_user|impersonated_service_account|gdch_service_account)"'
    rb'|"(?:refresh_token|client_secret)"\s{0,64}:\s{0,64}"[^"\s]{8}'
)
# Substrings every match above contains: cheap to look for in each chunk, so
# the regex runs only where one of them appears.
_CONTENT_HINTS = (
    b"PRIVATE KEY", b"PuTTY-User-Key", b"_account", b"authorized_user", b"refresh_token", b"client_secret"
)
_SCAN_CHUNK = 1 << 20
_SCAN_OVERLAP = 256  # longer than any match of _SECRET_CONTENT


class _ContentScanner:
    """Fed a file's bytes in order; remembers whether a secret marker went by.
    Markers split across chunks are caught through the kept overlap."""

    def __init__(self):
        self._tail = b""
        self.found = False

    def feed(self, chunk: bytes) -> bool:
        window = self._tail + chunk
        if any(h in window for h in _CONTENT_HINTS) and _SECRET_CONTENT.search(window):
            self.found = True
        self._tail = window[-_SCAN_OVERLAP:]
        return self.found


class Screen:
    """The built-in deny list plus the user's `!` exceptions that override it."""

    def __init__(self, exceptions: list[_Pattern]):
        self.exceptions = exceptions
        # One automaton for the whole list: a path costs one pass, not one per entry.
        self._deny = _Automaton([_compile(p, False, "deny list").tokens for p in DENY_PATTERNS])

    def denies(self, path: str) -> bool:
        """The path itself (not a parent) is on the deny list."""
        return self._deny.first_match(path.lower(), len(path)) == len(path)

    def denied_root(self, path: str) -> str | None:
        """The shortest prefix of `path` (itself or a parent) on the deny list."""
        end = self._deny.first_match(path.lower(), 0)
        return path[:end] if end is not None else None

    def opted_in(self, path: str, root: str) -> bool:
        """An exception names `path`, or a directory between `root` (the
        screened path) and it: asking for `.git` lets `.git/config` in, while
        asking for `src` does not let `src/.env` in."""
        return any(p.first_match(path, len(root)) is not None for p in self.exceptions)

    def may_opt_in_below(self, dir_path: str) -> bool:
        return _exception_below(self.exceptions, dir_path)


# --------------------------------------------------------------------------
# Walking the project


@dataclass
class ContextWalk:
    paths: list[str] = field(default_factory=list)  # to copy, parents first
    vouched: set[str] = field(default_factory=set)  # screened but named by an exception: not content-scanned
    screened: list[str] = field(default_factory=list)  # left out by the deny list (directories end in "/")


def walk_context(root: str, ignore: DockerIgnore, start: str = ".", screen: Screen | None = None) -> ContextWalk:
    """Relative paths (dirs, files, symlinks) under `root/start` that survive
    `ignore` and `screen`, walked like `docker build` does (sorted, depth
    first). `start` itself is included."""
    walk = ContextWalk()
    start = _clean(start)
    stack = [(start, screen.denied_root(start) if screen and start != "." else None, False)]
    while stack:
        rel, screened_root, opted = stack.pop()
        full = os.path.join(root, rel)
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise CalibanError(f"cannot read {full} for the image: {exc.strerror}; list it in .dockerignore") from None
        is_dir = stat.S_ISDIR(st.st_mode)
        if is_dir and rel != "." and os.path.isfile(os.path.join(full, OUTPUT_MARKER)):
            continue  # job results (OUTPUT_MARKER)
        if rel != "." and screen is not None:
            if screened_root is None and screen.denies(rel):
                screened_root = rel
            if screened_root is not None and not opted:
                opted = screen.opted_in(rel, screened_root)
        if rel != "." and ignore.matches(rel):
            if not is_dir or not ignore.must_descend(rel):
                continue
        elif screened_root is not None and not opted:
            if not (is_dir and screen.may_opt_in_below(rel)):
                walk.screened.append(rel + "/" if is_dir else rel)
                continue
        elif rel != ".":
            walk.paths.append(rel)
            if screened_root is not None:
                walk.vouched.add(rel)
        if is_dir:
            try:
                names = sorted(os.listdir(full), reverse=True)
            except OSError as exc:
                raise CalibanError(
                    f"cannot list {full} for the image: {exc.strerror}; list it in .dockerignore"
                ) from None
            for name in names:
                stack.append((name if rel == "." else f"{rel}/{name}", screened_root, opted))
    return walk


# --------------------------------------------------------------------------
# Context assembly


def secrets_summary(paths: list[str], limit: int = 12) -> str | None:
    """The one stderr line naming what the screen left out."""
    if not paths:
        return None

    def shown(path: str) -> str:
        if not path.isprintable():
            path = repr(path)[1:-1]
        return path if len(path) <= 120 else path[:117] + "..."

    names = ", ".join(shown(p) for p in paths[:limit])
    if len(paths) > limit:
        names += f", ... and {len(paths) - limit} more"
    return (
        f"caliban: left out of the image, they look like secrets: {names} "
        "(include one on purpose with '!PATH' in .calibanignore or .dockerignore)"
    )


@dataclass
class BuildContext:
    fileobj: "tempfile.SpooledTemporaryFile"
    files: list[str] = field(default_factory=list)  # paths under src/
    excluded_secrets: list[str] = field(default_factory=list)
    size: int = 0

    @property
    def secrets_line(self) -> str | None:
        return secrets_summary(self.excluded_secrets)


class _TarWriter:
    """A tar stream written member by member, so that a member found to hold
    a secret while its bytes are copied can be cut back out."""

    _BLOCK = 512
    _RECORD = 20 * 512  # tar's default record size

    def __init__(self, fileobj):
        self.fileobj = fileobj

    def _header(self, info: tarfile.TarInfo) -> None:
        self.fileobj.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    def add_bytes(self, name: str, data: bytes, mode: int = 0o644) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = mode
        self._header(info)
        self.fileobj.write(data)
        self.fileobj.write(b"\0" * (-len(data) % self._BLOCK))

    def add_path(self, full: str, arcname: str, rel: str, drop_secret: Callable[[], bool] | None = None) -> bool:
        """Add a directory, symlink or regular file. With `drop_secret`, the
        file's bytes are scanned as they are copied; when they hold a secret
        and drop_secret() agrees, the member is removed and False returned."""
        st = os.lstat(full)
        info = tarfile.TarInfo(arcname)
        info.mode = stat.S_IMODE(st.st_mode)
        info.mtime = int(st.st_mtime)
        if stat.S_ISDIR(st.st_mode):
            info.type = tarfile.DIRTYPE
            self._header(info)
        elif stat.S_ISLNK(st.st_mode):
            info.type = tarfile.SYMTYPE
            info.linkname = os.readlink(full)
            self._header(info)
        elif stat.S_ISREG(st.st_mode):
            try:
                fh = open(full, "rb")
            except OSError as exc:
                raise CalibanError(
                    f"cannot read {rel} for the image: {exc.strerror}; list it in .dockerignore"
                ) from None
            with fh:
                return self._add_file(fh, info, st.st_size, rel, drop_secret)
        # sockets, fifos and devices are skipped, as they cannot be copied anyway
        return True

    def _add_file(self, fh, info: tarfile.TarInfo, size: int, rel: str, drop_secret) -> bool:
        begin = self.fileobj.tell()
        info.size = size
        self._header(info)
        scanner = _ContentScanner() if drop_secret is not None else None
        remaining = size
        while remaining:
            chunk = fh.read(min(_SCAN_CHUNK, remaining))
            if not chunk:
                raise CalibanError(f"{rel} shrank while the build context was being made; build again")
            remaining -= len(chunk)
            if scanner is not None and scanner.feed(chunk):
                if drop_secret():
                    self.fileobj.seek(begin)
                    self.fileobj.truncate()
                    return False
                scanner = None  # named by an exception: copy the rest as is
            self.fileobj.write(chunk)
        self.fileobj.write(b"\0" * (-size % self._BLOCK))
        return True

    def close(self) -> None:
        self.fileobj.write(b"\0" * (2 * self._BLOCK))
        self.fileobj.write(b"\0" * (-self.fileobj.tell() % self._RECORD))


def make_build_context(
    project_dir: str,
    dockerfile: str,
    include: list[str],
    *,
    ca_bundle_path: str | None = None,
    secret_paths: list[str] = (),
) -> BuildContext:
    """Tar `dockerfile` plus the `include` paths (relative to project_dir,
    e.g. ["requirements.txt", "trainer"] or ["."]) filtered by the ignore
    files and the secrets screen; `secret_paths` (the job's own credentials)
    are left out whatever the ignore files say.

    Missing include paths raise UsageError naming them."""
    project_dir = os.path.abspath(project_dir)
    ignore = load_ignore(project_dir)
    screen = Screen(ignore.exceptions)
    secrets = {os.path.realpath(p) for p in secret_paths if p}

    selected: list[str] = []
    vouched: set[str] = set()
    excluded: list[str] = []
    seen: set[str] = set()
    for rel in include:
        rel = _clean(rel)
        if rel.startswith("..") or rel.startswith("/"):
            raise UsageError(f"{rel!r} is outside the project directory {project_dir}")
        if not os.path.lexists(os.path.join(project_dir, rel)):
            raise UsageError(f"{rel!r} does not exist in {project_dir}")
        # Parents first so directory entries carry their modes.
        parts = rel.split("/") if rel != "." else []
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent not in seen:
                seen.add(parent)
                selected.append(parent)
        walk = walk_context(project_dir, ignore, rel, screen)
        if rel != "." and not walk.paths:
            if walk.screened:
                raise UsageError(
                    f"{rel!r} is needed in the image but looks like a secret; "
                    f"include it on purpose with a line '!{rel}' in .calibanignore"
                )
            raise UsageError(f"{rel!r} is needed in the image but .dockerignore or .calibanignore excludes it")
        vouched |= walk.vouched
        excluded += walk.screened
        for path in walk.paths:
            if path not in seen:
                seen.add(path)
                selected.append(path)

    ctx = BuildContext(fileobj=tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024))
    tar = _TarWriter(ctx.fileobj)
    tar.add_bytes("Dockerfile", dockerfile.encode("utf-8"))
    if ca_bundle_path:
        try:
            with open(ca_bundle_path, "rb") as fh:
                tar.add_bytes(CONTEXT_CA_BUNDLE, fh.read())
        except OSError as exc:
            raise UsageError(f"ca_bundle: cannot read {ca_bundle_path}: {exc.strerror}") from None
    tar.add_path(project_dir, CONTEXT_SRC, ".")
    for rel in selected:
        full = os.path.join(project_dir, rel)
        if os.path.isfile(full) and not os.path.islink(full) and os.path.realpath(full) in secrets:
            excluded.append(rel)
            continue
        drop = None if rel in vouched else (lambda rel=rel: not screen.opted_in(rel, rel))
        if tar.add_path(full, f"{CONTEXT_SRC}/{rel}", rel, drop):
            ctx.files.append(rel)
        else:
            excluded.append(rel)
    tar.close()
    ctx.excluded_secrets = sorted(set(excluded))
    ctx.size = ctx.fileobj.tell()
    ctx.fileobj.seek(0)
    return ctx
