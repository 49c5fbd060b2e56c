"""A declared extra that is missing fails the test with the install command; it is skipped only when asked."""
import pytest

from extras import require


def test_present_extra_is_the_module():
    assert require("deepspeed").__name__ == "deepspeed"


def test_missing_extra_fails_naming_the_install(monkeypatch):
    monkeypatch.delenv("SVGAP_ALLOW_MISSING_EXTRAS", raising=False)
    with pytest.raises(pytest.fail.Exception, match=r"svgap_no_such_extra is missing .*pip install -e"):
        require("svgap_no_such_extra")


def test_missing_extra_skips_only_when_allowed(monkeypatch):
    monkeypatch.setenv("SVGAP_ALLOW_MISSING_EXTRAS", "1")
    with pytest.raises(pytest.skip.Exception):
        require("svgap_no_such_extra")
