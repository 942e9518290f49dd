#!/usr/bin/env python3
"""Claim callers the bot was not tuned on: a seeded generator of personas in simcaller's format.

    .venv/bin/python bench/gen_callers.py OUT_DIR [--callers 200] [--seed 7] [--distractors 3000]
                                          [--openings mixed|greeting]

Writes OUT_DIR/callers.jsonl (simcaller personas: gold slots, accepted variants, several ways
of saying each slot, an opening, yes/no words) and OUT_DIR/policies.csv (the callers' insured
persons among distractor records), for `bench/claims_eval.py --personas ... --policies ...`.

The phrasings come from how Mandarin speakers talk, written here from knowledge of the language,
not from ../shared/eval/claim_dev.jsonl and not from the bot's own dictionaries in config/: names
from a list of common surnames and given-name characters of its own, said as 姓X叫XY, 免贵姓X,
X，XY, "XY，Y是…的Y", spelt surnames (弓长张); hospitalisation said by its length or by an action
(在医院住了一个礼拜, 办了住院, 进了住院部); digits as 一/幺, 零/洞, 二/两, 七/拐, 九/勾, grouped with
pauses, or in Arabic digits with recognizer-style spaces; dates absolute, relative and by weekday;
fillers (嗯, 那个, 就是); half of the callers in recognizer style (words spaced, no punctuation).
Openings (`--openings`): by default a caller answers the first question straight away (30%),
greets first (about 15%), or greets and tells part or all of the story in one breath (about 55%:
what happened, and sometimes their name, the date and the hospital), as callers of a hotline do;
`greeting` makes every caller greet first and half of them say what happened (the populations
measured before 2026-12-07, caller for caller: the openings have their own random generator).
A different `--seed` gives a different population: tune on one, score on another.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

SLOTS = ["reporter_name", "reporter_phone", "relationship", "insured_name", "insured_id_number",
         "incident_date", "incident_type", "hospital", "diagnosis"]
ZONE = ZoneInfo("Asia/Shanghai")

# Common surnames (about the 120 most frequent) and a few two-character ones.
SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕"
                "丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃"
                "武戴莫孔向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒"
                "阮柯纪梅童凌毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳时穆农司卓"
                "古吉缪简车项连芦麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿桂全佟应臧闵苟邬边卞姬师和仇栾隋商刁沙荣巫寇") + [
    "欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "令狐", "慕容", "尉迟", "公孙"]
GIVEN_CHARS = list("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉萍红兰飞鹏辉建国志文斌波宁海云亮林晨欣怡"
                   "宇航浩然子涵梓萱雨轩佳琪思远嘉豪诗雅俊凯婷淑珍永福德贵春梅秋菊冬雪晓东卫红小燕慧颖琳琦悦瑶"
                   "博睿泽楷铭昊天翔鑫磊帅鸿毅峰岩松柏荣昌盛丹彤蕾薇莉凤琴美霖瑞祥振兴光耀庆安乐")
# How people spell a surname by its parts, or by a word it is in.
SPELLINGS = {"张": ["弓长张", "弓长的张"], "李": ["木子李", "木子的李"], "王": ["三横王", "三横一竖王"],
             "陈": ["耳东陈", "耳东的陈"], "吴": ["口天吴"], "胡": ["古月胡"], "徐": ["双人徐"], "杨": ["木易杨"],
             "章": ["立早章", "文章的章"], "许": ["言午许"], "周": ["周总理的周"], "刘": ["文刀刘"],
             "赵": ["走肖赵"], "黄": ["草头黄"], "林": ["双木林"], "郑": ["郑重的郑"], "孙": ["子小孙"]}
RELATIONS = {
    "本人": ["我自己", "就是我本人", "是我自己", "我本人", "给我自己报", "出事的就是我"],
    "配偶": ["我老婆", "我爱人", "我老公", "我媳妇", "我丈夫", "我妻子", "我先生", "我太太"],
    "父母": ["我爸", "我妈", "我父亲", "我母亲", "我爸爸", "我妈妈", "我老爸", "我老妈"],
    "子女": ["我儿子", "我女儿", "我闺女", "我家孩子", "我孩子", "我儿子"],
    "其他": ["我朋友", "我同事", "我邻居", "我哥", "我姐", "我弟弟", "我妹妹", "我表哥", "我同学"],
}
THIRD = {"我老婆": "她", "我媳妇": "她", "我妻子": "她", "我太太": "她", "我妈": "她", "我母亲": "她",
         "我妈妈": "她", "我老妈": "她", "我女儿": "她", "我闺女": "她", "我姐": "她", "我妹妹": "她"}
# (canonical, said) from a few big hospitals; and the local ones every city has, kept as said.
HOSPITALS = [("四川大学华西医院", "华西医院"), ("北京协和医院", "协和医院"), ("复旦大学附属中山医院", "中山医院"),
             ("上海交通大学医学院附属瑞金医院", "瑞金医院"), ("华中科技大学同济医学院附属同济医院", "同济医院"),
             ("中南大学湘雅医院", "湘雅医院"), ("浙江大学医学院附属第一医院", "浙大一院"),
             ("中国人民解放军总医院", "301医院"), ("首都医科大学附属北京天坛医院", "天坛医院"),
             ("广东省人民医院", "广东省人民医院"), ("江苏省人民医院", "江苏省人民医院")]
CITIES = ["杭州", "南京", "成都", "武汉", "长沙", "郑州", "西安", "合肥", "济南", "昆明", "南宁", "福州", "石家庄",
          "太原", "贵阳", "兰州", "青岛", "宁波", "苏州", "无锡", "佛山", "东莞", "温州", "绍兴", "洛阳", "襄阳"]
LOCAL_KINDS = ["市第一人民医院", "市第二人民医院", "市中医院", "市中心医院", "市妇幼保健院", "县人民医院",
               "市第三人民医院", "市儿童医院", "市骨科医院"]
# Diagnoses by incident type, as a doctor writes them and a caller repeats them.
ACCIDENT = ["左腿骨折", "右手骨折", "脚踝扭伤", "腰椎骨折", "头皮裂伤", "手臂烫伤", "锁骨骨折", "膝盖韧带撕裂",
            "肋骨骨折", "面部擦伤", "脑震荡", "手指割伤"]
ILLNESS_IN = ["肺炎", "急性阑尾炎", "胆结石", "急性胰腺炎", "冠心病", "脑梗", "糖尿病", "肾结石", "支气管炎",
              "胃出血", "高血压", "心衰"]
ILLNESS_OUT = ["急性肠胃炎", "上呼吸道感染", "皮炎", "结膜炎", "咽炎", "感冒发烧", "过敏性鼻炎", "湿疹"]
CRITICAL = ["肺癌", "胃癌", "乳腺癌", "肝癌", "白血病", "结肠癌", "甲状腺癌", "急性心肌梗死", "脑出血"]
DEATH = ["心肌梗死", "脑出血", "肺癌", "车祸", "心脏骤停", "多器官衰竭"]
FILLERS = ["嗯，", "那个，", "就是，", "呃，", "啊，", "是这样的，"]
DIGITS = "零一二三四五六七八九"
ALT_DIGITS = {"1": ["一", "幺"], "0": ["零", "洞"], "2": ["二", "两"], "7": ["七", "拐"], "9": ["九", "勾"]}
WEEKDAY_WORDS = ["一", "二", "三", "四", "五", "六", "日"]


@dataclass
class Person:
    surname: str
    given: str

    @property
    def name(self) -> str:
        return self.surname + self.given


def id_number(rng: random.Random, birth: date, female: bool) -> str:
    area = rng.choice(["110101", "310104", "440106", "510107", "330102", "420102", "320102", "370102", "610113"])
    seq = rng.randint(0, 99) * 10 + (rng.choice([0, 2, 4, 6, 8]) if female else rng.choice([1, 3, 5, 7, 9]))
    body = f"{area}{birth:%Y%m%d}{seq:03d}"
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    check = "10X98765432"[sum(int(c) * w for c, w in zip(body, weights)) % 11]
    return body + check


def say_digits(rng: random.Random, digits: str, style: str) -> str:
    """A digit string as a caller says it: Chinese digits (with 幺/洞/两/拐/勾 sometimes), grouped, or Arabic."""
    if style == "arabic":
        return digits
    alt = rng.random() < 0.5
    out = []
    for c in digits:
        if c in "Xx":
            out.append(rng.choice(["X", "叉", "x"]))
        elif alt and c in ALT_DIGITS and rng.random() < 0.7:
            out.append(ALT_DIGITS[c][1])
        else:
            out.append(DIGITS[int(c)])
    return "".join(out)


def group(text: str, sizes: list[int], sep: str) -> str:
    parts, i = [], 0
    for size in sizes:
        parts.append(text[i:i + size])
        i += size
    if i < len(text):
        parts.append(text[i:])
    return sep.join(p for p in parts if p)


def say_name(rng: random.Random, p: Person, me: bool) -> list[str]:
    s, g, n = p.surname, p.given, p.name
    forms = [n, f"{s}，{n}", f"姓{s}，叫{n}", f"姓{s}叫{n}", f"{n}，{g}是名字", " ".join([s, *g])]
    if me:
        forms += [f"我叫{n}", f"我是{n}", f"免贵姓{s}，叫{n}", f"我姓{s}，叫{n}"]
    if s in SPELLINGS:
        forms.append(f"{n}，{rng.choice(SPELLINGS[s])}")
    word_of = {"伟": "伟大的伟", "明": "明天的明", "华": "中华的华", "国": "国家的国", "军": "军人的军", "林": "树林的林",
               "红": "红色的红", "平": "平安的平", "安": "平安的安", "海": "大海的海", "文": "文化的文"}
    if g[-1] in word_of:
        forms.append(f"{n}，{word_of[g[-1]]}")
    rng.shuffle(forms)
    return forms[:3]


def say_date(rng: random.Random, today: date) -> tuple[date, list[str]]:
    kind = rng.choice(["yesterday", "before", "days", "weekday", "md", "md_arabic", "day"])
    if kind == "yesterday":
        return today - timedelta(days=1), ["昨天", "昨天下午", "就是昨天"]
    if kind == "before":
        return today - timedelta(days=2), ["前天", "前天晚上", "是前天"]
    if kind == "days":
        n = rng.randint(3, 9)
        word = "三四五六七八九"[n - 3]
        return today - timedelta(days=n), [f"{word}天前", f"大概{word}天前吧", f"{word}天之前"]
    if kind == "weekday":
        monday = today - timedelta(days=today.weekday())
        wd = rng.randint(0, 6)
        value = monday - timedelta(weeks=1) + timedelta(days=wd)
        word = WEEKDAY_WORDS[wd]
        return value, [f"上周{word}", f"上个星期{'天' if word == '日' else word}", f"上礼拜{'天' if word == '日' else word}"]
    value = today - timedelta(days=rng.randint(3, 40))
    if kind == "md_arabic":
        return value, [f"{value.month} 月 {value.day} 日", f"{value.month}月{value.day}号", f"{value.month}月{value.day}日"]
    month, day = chinese_number(value.month), chinese_number(value.day)
    if kind == "day" and value.month == today.month:
        return value, [f"{day}号", f"这个月{day}号", f"{month}月{day}号"]
    return value, [f"{month}月{day}号", f"{month}月{day}日", f"是{month}月{day}号那天"]


def chinese_number(n: int) -> str:
    if n < 10:
        return DIGITS[n]
    tens, ones = divmod(n, 10)
    return ("" if tens == 1 else DIGITS[tens]) + "十" + (DIGITS[ones] if ones else "")


def incident(rng: random.Random, who: str, relation_word: str) -> tuple[str, str, list[str]]:
    """(type, diagnosis, how the caller says what happened); `who` is 我 or the relation word."""
    kind = rng.choices(["住院", "门诊", "意外", "重疾", "身故"], weights=[30, 12, 30, 15, 13])[0]
    if kind == "住院":
        d = rng.choice(ILLNESS_IN)
        days = rng.choice(["一个礼拜", "五天", "三天", "十来天", "一个星期", "半个月"])
        says = [f"{who}因为{d}在医院住了{days}", f"{d}，办了住院", f"{who}得了{d}，进了住院部",
                f"{d}住院了", f"{who}{d}，住了{days}院", f"因为{d}，现在还在医院住着"]
    elif kind == "门诊":
        d = rng.choice(ILLNESS_OUT)
        says = [f"{d}，看的门诊", f"{who}{d}，去医院看了门诊", f"{d}，没住院，开了点药",
                f"门诊看的，{d}", f"{d}，就看了个门诊"]
    elif kind == "意外":
        d = rng.choice(ACCIDENT)
        how = rng.choice(["摔了一跤", "出了车祸", "被电动车撞了", "干活的时候不小心", "下楼梯踩空了", "打球受伤了"])
        says = [f"{who}{how}，{d}", f"意外，{d}", f"{how}，弄成了{d}", f"出了意外，{d}"]
    elif kind == "重疾":
        d = rng.choice(CRITICAL)
        says = [f"{who}查出来{d}", f"确诊了{d}", f"{d}，是重疾", f"{who}得了{d}"]
    else:
        d = rng.choice(DEATH)
        says = [f"{relation_word}因为{d}去世了", f"{relation_word}走了，{d}", f"{d}，人没了", f"{relation_word}过世了，是{d}"]
    rng.shuffle(says)
    return kind, d, says[:2]


def spaced(rng: random.Random, text: str) -> str:
    """Recognizer style: no punctuation, words separated by spaces (a rough segmentation)."""
    import jieba

    text = text.replace("，", " ").replace("。", " ")
    return " ".join(w for w in jieba.lcut(text) if w.strip())


def persona(rng: random.Random, index: int, policies: list[dict],
            openings: str = "mixed") -> dict:
    started = datetime(2026, rng.randint(1, 11), rng.randint(1, 28), rng.randint(8, 20), rng.randint(0, 59), tzinfo=ZONE)
    today = started.date()
    reporter = Person(rng.choice(SURNAMES), "".join(rng.choice(GIVEN_CHARS) for _ in range(rng.choice([1, 2, 2]))))
    relationship = rng.choices(list(RELATIONS), weights=[25, 18, 27, 15, 15])[0]
    relation_word = rng.choice(RELATIONS[relationship])
    if relationship == "本人":
        insured = reporter
    else:
        surname = reporter.surname if relationship in ("父母", "子女") and rng.random() < 0.6 else rng.choice(SURNAMES)
        insured = Person(surname, "".join(rng.choice(GIVEN_CHARS) for _ in range(rng.choice([1, 2, 2]))))
        if insured.name == reporter.name:
            insured = Person(surname, rng.choice(GIVEN_CHARS) + rng.choice(GIVEN_CHARS))
    age = {"本人": (25, 60), "配偶": (25, 60), "父母": (55, 85), "子女": (3, 30), "其他": (20, 70)}[relationship]
    birth = date(today.year - rng.randint(*age), rng.randint(1, 12), rng.randint(1, 28))
    female = relation_word in THIRD or rng.random() < 0.5
    idn = id_number(rng, birth, female)
    phone = rng.choice(["13", "15", "17", "18", "19"]) + str(rng.randint(0, 9)) + "".join(
        str(rng.randint(0, 9)) for _ in range(8))
    caller_number = rng.choice(["13", "15", "18"]) + "".join(str(rng.randint(0, 9)) for _ in range(9))
    use_caller = rng.random() < 0.2
    incident_date, date_says = say_date(rng, today)
    who = "我" if relationship == "本人" else relation_word
    kind, diagnosis, incident_says = incident(rng, who, relation_word if relationship != "本人" else "我家人")
    if kind == "身故" and relationship == "本人":  # the dead do not call
        relationship, relation_word = "配偶", "我爱人"
        insured = Person(rng.choice(SURNAMES), rng.choice(GIVEN_CHARS) + rng.choice(GIVEN_CHARS))
        who = relation_word
        kind, diagnosis, incident_says = incident(rng, who, relation_word)
        while kind != "身故":
            kind, diagnosis, incident_says = incident(rng, who, relation_word)
    if rng.random() < 0.75:
        canonical, said = rng.choice(HOSPITALS)
        accept = sorted({canonical, said})
    else:
        said = rng.choice(CITIES) + rng.choice(LOCAL_KINDS)
        accept = [said]
    id_style = rng.choice(["chinese", "chinese", "arabic"])
    id_said = say_digits(rng, idn, id_style)
    phone_said = say_digits(rng, phone, rng.choice(["chinese", "chinese", "arabic"]))
    sep = rng.choice(["，", "，", " "])
    answers = {
        "reporter_name": say_name(rng, reporter, me=True),
        "relationship": [relation_word, f"是{relation_word}", f"出事的是{relation_word}"] if relationship != "本人"
        else rng.sample(RELATIONS["本人"], 3),
        "insured_name": ([f"{relation_word}叫{insured.name}"] if relationship != "本人" else []) + say_name(rng, insured, me=False)[:2],
        "insured_id_number": [f"身份证号是{id_said}", group(id_said, [6, 8], sep), id_said],
        "reporter_phone": (["就用这个来电号码", "打这个电话就行"] if use_caller else [])
        + [f"我的手机号是{phone_said}", group(phone_said, [3, 4, 4], sep), phone_said],
        "incident_date": [date_says[0], date_says[1], f"{date_says[0]}出的事"],
        "incident_type": incident_says,
        "diagnosis": [diagnosis, f"医生说是{diagnosis}", f"诊断是{diagnosis}"],
        "hospital": [f"在{said}", said, f"{said}看的"],
    }
    if rng.random() < 0.3:  # fillers in front of some answers
        for slot in ("reporter_name", "incident_type", "hospital"):
            answers[slot] = [rng.choice(FILLERS) + a for a in answers[slot]]
    opening = rng.choice(["你好，我要报案", "喂，你好，我想报个案", "我要报案"])
    if rng.random() < 0.5:  # some callers say what happened at once
        opening += "，" + incident_says[0]
    if openings == "mixed":
        opening = mixed_opening(opening, reporter, relationship, relation_word, date_says[0],
                                incident_says[0], said, random.Random(idn + "opening"))
    gold = {"reporter_name": reporter.name, "relationship": relationship, "insured_name": insured.name,
            "insured_id_number": idn, "reporter_phone": caller_number if use_caller else phone,
            "incident_date": incident_date.isoformat(), "incident_type": kind, "hospital": said, "diagnosis": diagnosis}
    is_spaced = rng.random() < 0.5
    if is_spaced:
        answers = {k: [spaced(rng, a) for a in v] for k, v in answers.items()}
        opening = spaced(rng, opening) if opening else None
    policies.append({"policy_number": f"G{index:06d}{rng.randint(100000, 999999)}", "product": "综合医疗保险",
                     "holder_name": reporter.name if relationship != "其他" else insured.name,
                     "insured_name": insured.name, "insured_id_number": idn,
                     "phone": phone if relationship == "本人" else insured_phone(idn),
                     "start_date": (today - timedelta(days=rng.randint(60, 700))).isoformat(),
                     "expiry_date": (today + timedelta(days=rng.randint(30, 300))).isoformat()})
    return {"id": f"gen-{index:04d}", "started_at": started.isoformat(), "caller_number": caller_number,
            "gold": gold, "accept": {"hospital": accept, "diagnosis_core": diagnosis}, "answers": answers,
            "opening": opening, "spaced": is_spaced,
            "yes": rng.choice(["对", "对的", "是的", "没错", "嗯，对", "没问题"]),
            "no": rng.choice(["不对", "不是", "错了", "有个地方不对"])}


def mixed_opening(greeting: str, reporter: Person, relationship: str, relation_word: str, date_said: str,
                  incident_said: str, hospital_said: str, rng: random.Random) -> str | None:
    """How a caller opens once the bot has asked the first question: no opening at all (the
    answer comes straight), a greeting (the `greeting` drawn for them), or a greeting and part
    or all of the story in one breath, as people who have rehearsed what happened do. Its own
    generator (`rng`), so every other part of a seed's callers stays as `--openings greeting`."""
    kind = rng.choices(["none", "greeting", "story", "whole"], weights=[30, 30, 20, 20])[0]
    if kind == "none":
        return None
    if kind == "greeting":
        return greeting
    head = greeting.split("，" + incident_said)[0]  # the greeting without what it may already say
    who = "" if relationship == "本人" or relation_word in incident_said else relation_word
    parts = [f"{who}{incident_said}"]
    if kind == "whole":
        intro = rng.choice([f"我叫{reporter.name}", f"我是{reporter.name}", ""])
        parts = ([intro] if intro else []) + rng.choice([
            [f"{who}{incident_said}", f"{date_said}的事", f"在{hospital_said}"],
            [f"{date_said}{who}{incident_said}", f"在{hospital_said}看的"],
            [f"{who}{date_said}出的事", incident_said, f"现在在{hospital_said}"]])
    elif rng.random() < 0.5:
        parts.append(rng.choice([f"{date_said}的事", f"在{hospital_said}"]))
    return "，".join([head] + parts)


def insured_phone(id_number: str) -> str:
    """The insured's own phone, which the policy records carry (as the dev records do: never the
    holder's who calls for them); from its own generator, so the callers stay as they were."""
    own = random.Random(id_number)
    return own.choice(["13", "15", "18"]) + "".join(str(own.randint(0, 9)) for _ in range(9))


def distractor(rng: random.Random, index: int) -> dict:
    person = Person(rng.choice(SURNAMES), "".join(rng.choice(GIVEN_CHARS) for _ in range(rng.choice([1, 2, 2]))))
    birth = date(rng.randint(1940, 2020), rng.randint(1, 12), rng.randint(1, 28))
    return {"policy_number": f"D{index:07d}", "product": "综合医疗保险", "holder_name": person.name,
            "insured_name": person.name, "insured_id_number": id_number(rng, birth, rng.random() < 0.5),
            "phone": "13" + "".join(str(rng.randint(0, 9)) for _ in range(9)),
            "start_date": "2025-01-01", "expiry_date": "2027-01-01"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--callers", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--distractors", type=int, default=3000)
    parser.add_argument("--openings", choices=["mixed", "greeting"], default="mixed",
                        help="mixed: no opening, a greeting, or a greeting with the story (default); "
                        "greeting: every caller greets first, half say what happened (the populations "
                        "before 2026-12-07)")
    args = parser.parse_args()
    import jieba

    jieba.setLogLevel(60)
    rng = random.Random(args.seed)
    policies: list[dict] = []
    callers = [persona(rng, i, policies, args.openings) for i in range(args.callers)]
    policies += [distractor(rng, i) for i in range(args.distractors)]
    rng.shuffle(policies)
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "callers.jsonl").open("w", encoding="utf-8") as f:
        for c in callers:
            f.write(json.dumps(c, ensure_ascii=False) + "\n")
    with (args.out / "policies.csv").open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(policies[0]))
        writer.writeheader()
        writer.writerows(policies)
    print(f"{len(callers)} callers, {len(policies)} policy records in {args.out}")


if __name__ == "__main__":
    main()
