from speech.cer import character_error_rate, character_errors, normalize_for_cer


def test_spaces_and_punctuation_do_not_count():
    assert normalize_for_cer("你好 世界。") == "你好世界"
    assert character_error_rate("你好世界。", "你好 世界") == 0.0


def test_substitution_insertion_deletion():
    assert character_errors("甚至出现交易", "甚至出线交易") == (1, 6)
    assert character_errors("你好", "你好啊") == (1, 2)
    assert character_errors("你好世界", "世界") == (2, 4)


def test_empty_reference():
    assert character_error_rate("", "") == 0.0
    assert character_error_rate("", "多余") == 1.0
