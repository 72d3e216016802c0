"""REDIS_URL checked when the config loads, and its passwords kept out of logs, errors and reprs."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from redis_support import free_port

from otel_resilience import ConfigError, ReliabilityConfig
from otel_resilience import _redis_url as redis_url_module
from otel_resilience._redact import MASK, redact_text, redact_url
from otel_resilience._redis import RedisStore

#: URL forms a password can take, with the password each hides
SECRET_URLS = [
    ("redis://user:p@ss@cache:6379/0", "p@ss"),
    ("redis://:pw-secret@cache:6379", "pw-secret"),
    ("redis://:pa%40ss-word@cache/0", "pa%40ss-word"),
    ("rediss://cache:6380/0?password=hunter22&ssl_cert_reqs=none", "hunter22"),
    ("unix://:sockpass@/run/redis.sock?db=2", "sockpass"),
    ("redis://only-secret@cache:6379/0", "only-secret"),
]
SECRET_IDS = ["at-in-password", "no-user", "percent-encoded", "query", "unix", "bare-userinfo"]


@pytest.fixture(params=["with-redis", "urllib-only"])
def url_checker(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Both ways of checking a URL: with redis-py importable, and without it."""
    redis_url_module.redis_url_problem.cache_clear()
    if request.param == "urllib-only":
        monkeypatch.setattr(redis_url_module, "_probe_redis", lambda: None)
    yield request.param
    redis_url_module.redis_url_problem.cache_clear()


# --- REDIS_URL at load ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis://host:notaport", "Port could not be cast to integer value as 'notaport'"),
        ("redis://:pw@host:6379/notadb", "the database 'notadb' is not a number >= 0"),
        ("redis://host:6379/-1", "the database '-1' is not a number >= 0"),
        ("redis://host:6379/0/1", "the database '0/1' is not a number >= 0"),
        ("redis://host:70000/0", "Port out of range"),
        ("redis://host:0/0", "the port must be from 1 to 65535"),
        ("redis://:pw@/0", "the host is missing"),
        ("unix://?db=1", "a unix:// URL needs the socket's path"),
        ("redis://host/0?socket_timeout=soon", "socket_timeout='soon' is not a number"),
        ("redis://host/0?max_connections=-5", "max_connections='-5' is negative"),
    ],
    ids=[
        "port-not-a-number",
        "db-not-a-number",
        "db-negative",
        "db-two-segments",
        "port-too-big",
        "port-zero",
        "no-host",
        "unix-no-path",
        "query-not-a-number",
        "query-negative",
    ],
)
def test_unusable_redis_url_fails_at_load_naming_the_variable(
    url_checker: str, url: str, problem: str
) -> None:
    env = {"RELIABILITY_STATE_BACKEND": "redis", "RELIABILITY_REDIS_URL": url}

    with pytest.raises(ConfigError) as caught:
        ReliabilityConfig.from_env(env)

    message = str(caught.value)
    assert "RELIABILITY_REDIS_URL" in message
    assert problem in message
    assert "expected redis://[[user]:password@]host[:port][/db]" in message
    assert "pw" not in message.replace("password", "")


def test_unknown_query_parameter_is_refused_when_redis_py_is_installed(url_checker: str) -> None:
    url = "redis://host:6379/0?sokcet_timeout=1"  # misspelt: redis-py fails at connection
    if url_checker == "urllib-only":  # nothing to compare it with: accepted, as redis-py's
        assert url == ReliabilityConfig(REDIS_URL=url).REDIS_URL  # absence fails at first use
        return
    with pytest.raises(ConfigError, match="unexpected keyword argument 'sokcet_timeout'"):
        ReliabilityConfig(STATE_BACKEND="redis", REDIS_URL=url)


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis://cache",
        "redis://user:p@ss@cache:6379/15",
        "rediss://cache:6380/0?ssl_cert_reqs=none",
        "unix:///run/redis.sock?db=1",
        "redis://cache:6379/?max_connections=500&socket_keepalive=true",
    ],
    ids=["plain", "host-only", "password-with-at", "tls", "unix", "pool-options"],
)
def test_usable_redis_urls_are_accepted(url_checker: str, url: str) -> None:
    assert url == ReliabilityConfig(STATE_BACKEND="redis", REDIS_URL=url).REDIS_URL


def test_redis_py_missing_is_checked_with_urllib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis.connection", None)  # "import" raises ImportError

    assert redis_url_module._probe_redis() is None


def test_problem_words_never_quote_the_password() -> None:
    redis_url_module.redis_url_problem.cache_clear()
    problem = redis_url_module.redis_url_problem("redis://:notaport@host:notaport/0")

    assert problem == "Port could not be cast to integer value as '***'"
    assert redis_url_module.redis_url_problem("http://host") == (
        "the scheme must be redis://, rediss:// or unix://"
    )


def test_config_module_does_not_import_redis() -> None:
    code = (
        "import sys; import otel_resilience, otel_resilience._config as c;"
        " c.ReliabilityConfig(HTTP_RETRIES=2);"
        " print('redis' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


# --- secrets ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "secret"), SECRET_URLS, ids=SECRET_IDS)
def test_redact_url_masks_every_password_form(url: str, secret: str) -> None:
    shown = redact_url(url)

    assert secret not in shown
    assert "***" in shown
    assert shown.split("://")[0] == url.split("://")[0]  # still readable: scheme and host
    assert "cache" in shown or "redis.sock" in shown


_SECRET_CHARS = st.characters(
    codec="ascii", exclude_characters="/?#", exclude_categories=("Cc", "Zs")
)


@settings(max_examples=300, deadline=None)
@given(
    user=st.text(st.characters(codec="ascii", categories=("L", "N")), max_size=8),
    password=st.text(_SECRET_CHARS, min_size=1, max_size=16),
    host=st.sampled_from(["cache", "10.0.0.7", "redis.internal"]),
    in_query=st.booleans(),
)
@example(user="user", password="p@ss", host="cache", in_query=False)  # the old "***@ss@cache"
@example(user="", password="a:b@c", host="cache", in_query=False)
@example(user="", password="@a", host="cache", in_query=True)  # not taken for a user info
def test_no_password_survives_redaction(
    user: str, password: str, host: str, in_query: bool
) -> None:
    if in_query:
        url = f"rediss://{host}:6380/0?ssl_cert_reqs=none&password={password}"
        assume("&" not in password and ";" not in password)
    else:
        url = f"redis://{user}:{password}@{host}:6379/0"
    rest = url.replace(password, "", 1)
    assume(password not in rest + "cannot reach  now")  # it is not also the other text
    assume(password not in MASK)  # "*" survives as part of the mask, not as the secret

    shown = redact_url(url)
    in_text = redact_text(f"cannot reach {url} now")

    assert password not in shown
    assert password not in in_text
    assert host in shown


def test_redact_url_keeps_the_user_name_and_leaves_other_text_alone() -> None:
    assert redact_url("redis://app:pw@cache:6379/0") == "redis://app:***@cache:6379/0"
    # the user info ends at the last "@": no piece of the password is left before the host
    assert redact_url("redis://app:p@ss@cache:6379/0") == "redis://app:***@cache:6379/0"
    assert redact_url("100/second") == "100/second"
    assert redact_url("redis://cache:6379/0?db=1") == "redis://cache:6379/0?db=1"


@pytest.mark.parametrize(("url", "secret"), SECRET_URLS, ids=SECRET_IDS)
def test_config_repr_and_errors_never_show_the_password(url: str, secret: str) -> None:
    config = ReliabilityConfig(STATE_BACKEND="redis", REDIS_URL=url)

    assert secret not in repr(config)
    assert "REDIS_URL=" in repr(config)
    assert repr(config).startswith("ReliabilityConfig(HTTP_TIMEOUT_SEC=30, HTTP_RETRIES=3")
    with pytest.raises(ConfigError) as caught:  # a bad value elsewhere in the same URL
        ReliabilityConfig(REDIS_URL=url + ("&" if "?" in url else "?") + "db=first")
    assert secret not in str(caught.value)
    with pytest.raises(ConfigError) as caught:  # the scheme pattern's error quotes the value
        ReliabilityConfig.from_env({"RELIABILITY_REDIS_URL": "http" + url[url.index(":") :]})
    assert secret not in str(caught.value)
    assert "RELIABILITY_REDIS_URL='http" in str(caught.value)


@pytest.mark.parametrize(("url", "secret"), SECRET_URLS[:4], ids=SECRET_IDS[:4])
def test_store_logs_and_repr_never_show_the_password(
    caplog: pytest.LogCaptureFixture, url: str, secret: str
) -> None:
    caplog.set_level(logging.DEBUG, logger="otel_resilience")
    url = url.replace("cache:6379", f"127.0.0.1:{free_port()}").replace("cache", "127.0.0.1")
    store = RedisStore(url, 50)
    # an error message that quotes the URL (as some clients' do)
    store.mark_failed(ConnectionError(f"cannot reach {url} with password {secret}"))
    assert store.run("return 1", ("k",), ()) is None  # nothing listens there

    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "state store unreachable" in text
    assert secret not in text
    assert secret not in repr(store)
    assert "***" in text
    store.close()
