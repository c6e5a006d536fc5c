"""Paths taken from a spec or a plugin's config: resolved with a reason instead of a traceback, kept inside a root.

Where each path field of a spec may point is said in :mod:`mummi_like.spec.models`.
"""

from __future__ import annotations

from pathlib import Path


def inside(root: Path, relative: str | Path) -> Path:
    """``relative`` resolved against ``root``, refusing anything that ends up outside ``root``.

    Symlinks are resolved on both sides, so a link inside ``root`` that points
    elsewhere is refused too. An absolute ``relative`` is accepted only when it
    lies inside ``root``.

    Raises
    ------
    ValueError
        The resolved path escapes ``root`` (through ``..``, an absolute path or a
        symlink), or cannot be resolved (:func:`resolved`).
    """
    base = resolved(Path(root))
    target = resolved(base / relative)
    if not target.is_relative_to(base):
        raise ValueError(f"path {str(relative)!r} resolves to {target}, which is outside {base}")
    return target


def resolved(path: Path) -> Path:
    """``path`` made absolute with every symlink resolved, or a ValueError that says why it cannot be.

    ``Path.resolve`` raises ``RuntimeError`` for a symlink loop and
    ``ValueError`` for a NUL character, and a name the file system refuses (too
    long) raises ``OSError`` at the first look-up: a path taken from a spec or a
    plugin's config must turn each into a message about that path, not a
    traceback. Once resolved here, looking the path up (``exists``, ``is_dir``)
    no longer raises.

    Raises
    ------
    ValueError
        Naming the path and the reason.
    """
    try:
        path = path.resolve()
        path.exists()  # raises for a name the file system refuses, which resolve() lets through
        return path
    except RuntimeError:  # what pathlib raises for a symlink loop
        raise ValueError(f"path {str(path)!r} leads into a loop of symlinks; fix or remove the link") from None
    except OSError as error:
        raise ValueError(f"path {str(path)!r} cannot be resolved: {error.strerror}") from None
    except ValueError:
        raise ValueError(f"path {str(path)!r} holds a NUL character (\\0), which no path can hold") from None
