"""The one exception type the command line turns into a one-line message."""


class SSD3DError(ValueError):
    """Bad input or an unusable environment, explained in one line for the user.

    The CLI prints ``error: <message>`` and exits non-zero on this type; anything else is a
    bug and keeps its traceback.
    """
