"""Errors that gen reports to the user as one clear line."""


class ConfigError(ValueError):
  """A bad config value: the message names the field and what is allowed."""
