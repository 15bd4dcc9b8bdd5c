"""Errors raised by the library. Every message says what to do next."""

from __future__ import annotations


class RagError(Exception):
    """Base class for every error 記事QA raises on purpose."""


class ModelError(RagError):
    """A model file is missing, unverified or unusable."""


class IndexNotBuiltError(RagError):
    """There is no index where one was expected."""


class IndexMismatchError(RagError):
    """The index was built with other settings (model, format) than the ones in use."""


class IndexCorruptError(RagError):
    """The index files are unreadable or inconsistent."""


class SeedsError(RagError):
    """The seeds folder is missing or holds no usable article."""


class PromptTooLongError(RagError):
    """The question, history and passages do not fit in the model's context window."""


class QuestionError(RagError):
    """The question is empty, too long or not text."""
