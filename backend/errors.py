"""Named errors of the backend; the HTTP layer maps each to one status code, in one handler."""


class BackendError(Exception):
    """Base class: the message is safe to show to a Label Studio user (no secrets)."""

    status_code = 500


class SettingsError(BackendError):
    """An environment variable is missing or invalid (raised at start-up)."""


class BadRequestError(BackendError):
    """The request is malformed or names something the backend cannot serve."""

    status_code = 400


class LabelConfigError(BadRequestError):
    """The project's label config is not single-image classification with one Choices block."""


class UnknownProjectError(BackendError):
    """The backend holds no state for this project."""

    status_code = 404


class NotConfiguredError(BackendError):
    """The backend lacks the Label Studio URL or API key it needs for this request."""

    status_code = 503


class LabelStudioError(BackendError):
    """Label Studio answered with an error or could not be reached (after retries)."""

    status_code = 502


class MediaError(BackendError):
    """One task's image could not be fetched or decoded; the task is skipped, not the round."""

    status_code = 422
