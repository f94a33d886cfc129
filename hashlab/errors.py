"""The errors a user can fix: the command line prints their message on one line, with no traceback.

Each message names the file or option, what is wrong and the fix. HASHLAB_TRACEBACK=1 shows the
traceback as well (for bug reports).
"""


class HashlabError(ValueError):
    """A bad input or a state the user can change; the message says what to do."""


class ConfigError(HashlabError):
    """An option value out of range or a name that does not exist."""


class StorageError(HashlabError):
    """A write that failed (a full disk, a quota, a read-only folder): what was there before is intact."""


def storage_error(path, error: Exception, before: str = "the previous file") -> StorageError:
    reason = getattr(error, "strerror", None) or str(error).strip().splitlines()[-1]
    return StorageError(f"could not write {path}: {reason} (a full disk?). "
                        f"Nothing was replaced: {before} is intact. Free space, or point the output elsewhere "
                        "(--runs_dir, HASHLAB_CACHE, --out), and run again; finished work is kept.")


def yaml_problem(error: Exception) -> str:
    """A YAML parser's error on one line: where it is and what is wrong there (its own text spans several)."""
    mark, problem = getattr(error, "problem_mark", None), getattr(error, "problem", None)
    if mark is None or problem is None:
        return " ".join(str(error).split())
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


def close_matches(name: str, known) -> str:
    """' (did you mean X?)' when a known name is close to ``name``, else ''; every one of the closest when several
    are as close (efficientnet_lite: Lite0, Lite1 and Lite2)."""
    import difflib
    by_lower = {k.lower(): k for k in known}  # Cifar10 finds CIFAR10
    matches = difflib.get_close_matches(name.lower(), list(by_lower), n=len(by_lower), cutoff=0.6)
    if not matches:
        return ""
    ratio = {m: difflib.SequenceMatcher(None, name.lower(), m).ratio() for m in matches}
    closest = sorted(by_lower[m] for m in matches if ratio[m] == max(ratio.values()))
    names = " or ".join(filter(None, [", ".join(map(repr, closest[:-1])), repr(closest[-1])]))
    return f" (did you mean {names}?)"


def user_error(error: BaseException) -> HashlabError | None:
    """The HashlabError that caused ``error`` (itself, or one it was raised from), if any."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, HashlabError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None
