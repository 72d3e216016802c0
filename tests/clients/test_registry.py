"""The client-classifier registry: lazy, found over the MRO, and never importing a library."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from otel_resilience import ExternalServiceError
from otel_resilience._classify import CLIENT_CLASSIFIERS, classifier_for
from support import classify

E = ExternalServiceError
LIBRARIES = ["httpx", "requests", "aiohttp", "grpc", "botocore", "openai", "google", "redis"]


def test_importing_and_classifying_imports_no_client_library():
    code = (
        "import sys, otel_resilience\n"
        "registry = otel_resilience.default_runtime().classifiers\n"
        "registry.classify(ConnectionResetError('reset by peer'))\n"
        "registry.classify(ValueError('boom'))\n"
        f"loaded = [name for name in {LIBRARIES!r} if name in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)

    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("library", LIBRARIES)
def test_every_library_has_a_classifier(library: str):
    assert callable(CLIENT_CLASSIFIERS[library])


def test_a_subclass_defined_elsewhere_is_classified_by_its_library_base():
    class AppTimeout(httpx.ReadTimeout):  # lives in this test module, not in httpx
        pass

    assert classifier_for(AppTimeout("slow")) is CLIENT_CLASSIFIERS["httpx"]
    assert classify(AppTimeout("slow")).error_type is E.TIMEOUT


def test_builtin_exceptions_have_no_client_classifier():
    assert classifier_for(ConnectionResetError("reset")) is None


def test_a_library_exception_the_classifier_does_not_know_falls_through_to_generic_rules():
    error = httpx.ResponseNotRead()

    assert CLIENT_CLASSIFIERS["httpx"](error) is None
    assert classify(error).error_type is E.UNKNOWN_ERROR
