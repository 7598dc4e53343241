"""How the Space's event functions are served: a failure becomes a message for the user, the page stays as it was."""

from __future__ import annotations

import html
import inspect
import logging
import re
import typing

import gradio as gr

logger = logging.getLogger(__name__)

USER_ERRORS = (gr.Error, ValueError, FileNotFoundError)
# an absolute path (two or more separators) not inside a word: shown as its last part, never the server's temp folders
ABSOLUTE_PATH = re.compile(r"(?<![\w.])(?:[A-Za-z]:)?(?:[\\/][^\s'\"\\/:()]+)+[\\/]([^\s'\"\\/()]+)")


def readable(error: BaseException) -> str:
    """The message of `error` for a user: absolute paths (the server's temp folders) reduced to their file name."""
    message = error.message if isinstance(error, gr.Error) else str(error)
    return ABSOLUTE_PATH.sub(lambda match: match.group(1), str(message))


def served(fn, name: str):
    """
    `fn` (an event function) as the served app calls it. A failure keeps the page as it was: a user error
    (`gr.Error`, `ValueError`, `FileNotFoundError`) becomes a warning toast with its message, any other exception a
    toast naming it (its traceback goes to the server log), and every output -- the user's rollout state included --
    is left unchanged (`gr.skip()`) instead of being replaced by red "Error" badges. API clients (`gradio_client`)
    get a `gr.Error` with the same message instead. Paths in messages are reduced to file names.

    The wrapper takes the `gr.Request` first and otherwise has `fn`'s signature, so that gradio still passes
    `gr.SelectData` / `gr.Progress` parameters of `fn`.
    """

    def failed(error: Exception, request: gr.Request | None):
        if isinstance(error, USER_ERRORS):
            message = readable(error)
        else:
            logger.exception("%s failed", name)
            message = f"{name} failed ({type(error).__name__}: {readable(error)}). Your rollout is unchanged."
        headers = getattr(request, "headers", None) or {}
        if headers.get("x-gradio-user") == "api":
            raise gr.Error(message) from error
        gr.Warning(html.escape(message, quote=False))  # the toast renders HTML
        return gr.skip()

    if inspect.isgeneratorfunction(getattr(fn, "func", fn)):

        def event(request: gr.Request, *args):
            try:
                yield from fn(*args)
            except Exception as error:  # noqa: BLE001 -- every failure becomes a message, see above
                yield failed(error, request)

    else:

        def event(request: gr.Request, *args):
            try:
                return fn(*args)
            except Exception as error:  # noqa: BLE001
                return failed(error, request)

    signature = inspect.signature(fn)
    request = inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=gr.Request)
    event.__signature__ = signature.replace(parameters=[request, *signature.parameters.values()])
    try:
        hints = typing.get_type_hints(getattr(fn, "func", fn))
    except (NameError, TypeError):
        hints = {}
    event.__annotations__ = {**hints, "request": gr.Request}
    event.__name__ = event.__qualname__ = name
    return event
