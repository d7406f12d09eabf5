"""The error hierarchy. Only cli.py turns these into exit codes."""


class MaildaemonError(Exception):
    """Base of every error maildaemon raises on purpose."""


class UserError(MaildaemonError):
    """A bad argument: unknown task, person, client, stage or inbox (exit 1)."""


class ConfigError(MaildaemonError):
    """The configuration is invalid or missing (exit 2)."""


class OperationError(MaildaemonError):
    """An operation failed: a server, a login, a delivery (exit 3)."""


class ImapError(OperationError):
    """An IMAP server failed or went away."""


class AuthError(OperationError):
    """A login or token was refused."""


class DeliveryError(OperationError):
    """A digest or alert could not be delivered."""


class ParseError(OperationError):
    """A message could not be parsed at all and was quarantined."""
