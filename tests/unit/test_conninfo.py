"""The conninfo builder (ragops/pg/conninfo.py) against libpq's own parser, and the redaction of a quoted password."""
from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict

from ragops.pg.conninfo import conninfo, quote
from ragops.secrets import redact


@pytest.mark.parametrize("password", ["plain", "with space", "it's", "back\\slash", "a=b", "", "x'y z\\'"])
def test_libpq_reads_every_value_back_unchanged(password):
    text = conninfo(host="127.0.0.1", port=5432, user="postgres", password=password, application_name="ragops")
    assert conninfo_to_dict(text) == {"host": "127.0.0.1", "port": "5432", "user": "postgres",
                                      "password": password, "application_name": "ragops"}


def test_plain_words_are_written_as_before_and_none_is_left_out():
    assert conninfo(host="a,b", port="1,2", dbname="app", password=None, target_session_attrs="read-write") == \
        "host=a,b port=1,2 dbname=app target_session_attrs=read-write"
    assert quote("it's") == "'it\\'s'"


def test_a_quoted_password_is_redacted_whole():
    text = conninfo(host="h", password="pa ss'word tail", dbname="d")
    assert redact(text) == "host=h password=*** dbname=d"
    assert redact("host=h password=plain dbname=d") == "host=h password=*** dbname=d"
