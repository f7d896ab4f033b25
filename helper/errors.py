"""The project's error types and messages. A leaf: every layer (models, dataset, crd,
distiller_zoo, helper) may import it; it imports nothing of the project."""
import difflib


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


def close_names(value, names, n=3, cutoff=0.6):
    """The known names closest to a mistyped one (for "did you mean ...?")."""
    return difflib.get_close_matches(str(value), list(names), n=n, cutoff=cutoff)


def unknown_name(what, value, names, n=3, cutoff=0.6):
    """UsageError for a name that is not one of names: "unknown <what> 'x'; did you mean y?",
    or the whole list when nothing is close."""
    names = list(names)
    close = close_names(value, names, n, cutoff)
    hint = f'did you mean {", ".join(close)}?' if close else f'choose from {", ".join(names)}'
    return UsageError(f'unknown {what} {value!r}; {hint}')


def teacher_missing(path, detail=''):
    """UsageError for a --path_t that is not there: what it is, and where a teacher comes from."""
    return UsageError(f'teacher checkpoint not found: {path}{detail}; fetch the published CIFAR-100 teachers '
                      f'with bash scripts/fetch_pretrained_teachers.sh, or train one with train_teacher.py')
