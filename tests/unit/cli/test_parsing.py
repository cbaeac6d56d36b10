

def test_digest_algorithms_keep_order_ignore_case_and_drop_repeats() -> None:
    from sip2uc.cli.run import _digest

    assert _digest(None) == ()
    assert _digest(["md5"]) == ("MD5",)
    assert _digest(["sha-256", "MD5", "md5"]) == ("SHA-256", "MD5")


def test_unknown_digest_algorithm_is_a_usage_error() -> None:
    import pytest
    import typer
    from sip2uc.cli.run import _digest

    with pytest.raises(typer.BadParameter, match="choose SHA-256 or MD5"):
        _digest(["SHA-1"])
