"""SMS length and billing: the 【signature】 counts, 70 characters is one message, longer ones per 67,
marketing messages carry the opt-out line once."""

from __future__ import annotations

import pytest

from scheduler.channels import sms_text


@pytest.mark.parametrize("chars, parts", [(0, 0), (1, 1), (70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4)])
def test_segments(chars, parts):
    assert sms_text.segments(chars) == parts


def test_the_signature_counts():
    body = "续" * 64  # 64 + 【保险服务】 (6) = 70: one message
    assert sms_text.compose(body, sign_name="保险服务") == ("【保险服务】" + body, 1)
    assert sms_text.compose(body + "。", sign_name="保险服务")[1] == 2
    # An already bracketed name and a text already signed are not signed twice.
    assert sms_text.signed("【保险服务】你好", "【保险服务】") == "【保险服务】你好"


def test_marketing_gets_the_opt_out_line_once_and_service_does_not():
    full, _ = sms_text.compose("年终回馈，续保享优惠。", sign_name="保险服务", purpose="marketing")
    assert full == "【保险服务】年终回馈，续保享优惠。拒收请回复R"
    again, _ = sms_text.compose("年终回馈。拒收请回复R", sign_name="保险服务", purpose="marketing")
    assert again.count("拒收请回复R") == 1
    service, _ = sms_text.compose("您的保单将到期。", sign_name="保险服务", purpose="service")
    assert "拒收" not in service
    custom, _ = sms_text.compose("活动。", sign_name="", purpose="marketing", opt_out_line="回T退订")
    assert custom == "活动。回T退订"


def test_letters_digits_and_punctuation_count_one_each():
    assert sms_text.length("AB12，。 x") == 8
