"""The one error type the command line turns into a single clear line and a non-zero exit."""


class UserError(Exception):
    """Bad input or a state the user can fix; the message says what is wrong and what to do."""
