"""The web page and JSON API (``gpuplan serve``; extra ``[web]``). A thin shell over the CLI's commands."""

from __future__ import annotations


def create_app():
    """Build the FastAPI application (imports FastAPI only when called)."""
    from gpuplan.web.app import create_app as _create

    return _create()
