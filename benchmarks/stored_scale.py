"""What touches every stored petition, at the size of a department's database: the masking
migrations 0005 and 0006 run on upgrade, and GET /v1/emerging and the case page's same-matter
lists on a few years of intake.

For each --sizes (default 20,000, 100,000 and 200,000 stored triages) a SQLite file is built
at revision 0004, as an upgrade finds it: triages received at --per-day a day up to now, of
250-500 characters, with the model's explanation stored with each (words and rules quoted at
their places), decisions, review items and their audit entries. Most numbers in them are
masked already, as the service masked them when it stored them; some are typed as 0005 and
0006 mask them now (138  1234  5678, 138<tab>1234<tab>5678), in the text, in the explanation's
quotes, in the decisions' reasons, the review notes and the audit's details. --group-share of
the petitions are members of groups: one letter sent by several people within days, each copy
with its own name, number and a sentence or two of its own.

Then, each in a fresh process (its peak memory its own): 0005, then 0006, as the service runs
them at start (one transaction, Database.migrate's engine), timed, with the process's peak
memory (VmHWM) and the longest stretch its log said nothing; and the lists, as a worker makes
them: the same-matter index built from the database as at a worker's start, GET /v1/emerging
(its route function, as the 群体苗头 page calls it) with the settings' defaults and with the
widest look-back it accepts (366 days), and the case page's two same-matter lists for 200
stored petitions picked at random.

The texts are made here from fragments of this file, never read from the real data (--real
reads the bodies of ../shared/data/real/unlabeled.csv at run time instead, for their length
and wording; nothing of them is written anywhere). Seeded; the temporary folder is removed.

    python benchmarks/stored_scale.py [--sizes 20000,100000,200000] [--per-day 180] [--seed 0]
        [--json benchmarks/results/stored_scale.json] [--keep DIR] [--real]
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "stored_scale.json"
REAL = ROOT.parent / "shared" / "data" / "real" / "unlabeled.csv"

# --- the petitions ---------------------------------------------------------------------------

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾萧田董潘袁蔡蒋余于杜叶程魏苏吕丁任沈姚卢"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀英华建国平红玉兰桂云飞鹏辉斌宇浩凯俊帆"
PLACE_HEADS = "东西南北中新青长安永和平兴福康宁泰华盛丰瑞祥金银玉龙凤鹤松柏桃李江河湖山海"
ORG_WORDS = ("建工", "恒远", "鑫达", "宏图", "盛世", "瑞丰", "华联", "金茂", "天成", "永信", "德润", "汇通", "锦程", "中和",
             "博远", "嘉禾", "通达", "富源", "佳美", "新锐", "力拓", "宏达", "昌盛", "兴旺", "众诚", "和泰", "亿丰", "凯旋")
ORG_KINDS = ("建筑劳务有限公司", "物业服务有限公司", "电子科技有限公司", "服装厂", "机械厂", "餐饮管理有限公司", "物流有限公司",
             "食品有限公司", "家具厂", "商贸有限公司", "保安服务有限公司", "汽车配件厂")
PROJECT_KINDS = ("项目部", "工地", "小区", "花园", "广场", "产业园")
DISTRICTS = ("高新区", "经开区", "城东区", "城西区", "滨江区", "北湖区", "临港区", "南山县", "青石县", "白河县")

# A sentence is written in one of several ways: [a|b|c] picks one, {slot} is filled in.
TOPICS: dict[str, list[str]] = {
    "欠薪": [
        "[我们|我和工友们|我们班组十几个人]是{org}的[工人|员工|农民工]，[从|自]{year}年{month}月[起|开始]公司就[以资金周转困难为由|说没钱]拖欠工资",
        "[到现在|截至目前|至今]已经有{months}个月没有[发|领到]工资了，我[个人|自己]被拖欠{amount}元，[全组|大家]合计[拖欠|被欠]{big}万元",
        "我们[多次|反复|好几次]找到[公司负责人|老板|项目经理]{person}讨要，对方[一直推脱|总是找借口|一拖再拖]，说等{project}结算后再发",
        "后来[负责人|老板|包工头][干脆|索性]不接电话，[办公室也锁了门|人也找不到了|微信也把我们拉黑了]",
        "{district}劳动监察[大队|部门]我们去过[两次|三次|好几次]，工作人员[登记后|做了笔录后]让我们回家等消息",
        "[眼看就要过年了|天气越来越冷了|马上就要开学了]，家里[老人看病|孩子上学|房租水电]都等着这笔钱",
        "我们都是[外地来打工的|从农村出来的|跟着老乡来的]，没有签劳动合同，只有[考勤记录|记工本|微信聊天记录]可以证明",
        "[包工头|劳务班组长]说是{org}没有拨付工程款，{org}又说款[早就|去年就]付给了劳务公司",
        "工资表上的签字[不是我们本人签的|是别人代签的]，实际发到手的比工资表上少了[一大截|一半多]",
        "有的工友已经回[老家|村里]了，走之前连路费都是[借的|跟亲戚要的]",
        "{project}的[监理|施工员|安全员]也可以证明我们一直在[干活|上班|施工]",
        "我们[去|到]{district}[信访局|街道办|住建局]反映过，[至今没有回音|说不归他们管|让我们找人社部门]",
    ],
    "社保": [
        "我在{org}[工作|上班]了{years}年，[公司|单位]一直没有[给我|为我]缴纳社会保险",
        "[今年|前几天|上个月]我去[社保窗口|网上]查询才发现，{year}年到{year2}年之间有{months}个月是断缴的",
        "[公司|单位]当时每个月从工资里扣了社保费，却没有[按时足额缴到社保经办机构|给我们缴上]",
        "我向[人事部门|财务|老板]反映，对方说是[系统出了问题|漏报了]，让我自己去补缴",
        "按照规定用人单位应当为职工缴纳社会保险费，补缴的滞纳金也应当由单位承担",
        "因为断缴，我在{district}[买房的资格受到了影响|孩子入学积分也不够|看病不能报销]",
        "我要求[公司|单位]补缴欠缴的[养老、医疗和失业保险|各项社会保险]，并承担相应的滞纳金",
        "我保留了[工资条|银行流水|劳动合同]，可以证明[公司|单位]每个月都扣了社保",
        "社保中心说需要单位出具证明才能办理补缴，可是单位[拒绝配合|一直不给开]",
        "[同一批|同车间|同部门]的[同事|工友]也有[类似|一样]的情况，[有的|好几个人]已经[离职|退休]了",
        "{org}的[法人|老板]换过好几次，[新老板|现在的负责人]说以前的事他不管",
    ],
    "养老": [
        "我今年{age}岁，{year}年参加工作，在原{org}[干了十几年|工作到企业改制]",
        "企业改制时[档案|人事档案]交到了{district}[人才中心|档案馆]，现在办理退休时说档案里缺少[招工表|转正定级表]",
        "没有[招工表|这份材料]，我之前的工龄就不能认定为视同缴费年限，每月养老金要少[几百元|不少钱]",
        "我[多次|反复]到[档案馆|原单位的主管部门]查找，都说[年代久远|档案不全]无法提供",
        "当年一起[进厂|参加工作]的同事都已经按视同缴费年限办理了退休，只有我被卡住",
        "恳请有关部门根据[工资台账|职工花名册|当年的工资单]等其他材料认定我的工龄",
        "我的养老金核定为每月{amount}元，比同工龄的同事低了不少，怀疑计算有误",
        "经办人员解释不清楚计算依据，只说是[系统自动生成的|按政策算的]",
        "我[身体不好|老伴常年生病]，全靠这点养老金[生活|过日子]",
    ],
    "工伤": [
        "{year}年{month}月{day}日我在{org}[车间|工地|仓库][操作设备|搬运货物|干活]时[右手|左腿|腰部]受伤，住院治疗了{months}个月",
        "出院后单位一直拖着不给申请工伤认定，说我是[违规操作|自己不小心]，自己负全部责任",
        "我自己向{district}人社局提交了工伤认定申请，现在已经[超过法定期限|过去好几个月]还没有结论",
        "医疗费是我家里[借钱垫付的|东拼西凑的]，一共花了{amount}元，单位只给了[两千|三千]块钱",
        "劳动能力鉴定结论是[九级|十级|八级]伤残，单位不同意支付一次性伤残补助金",
        "单位还以我不能胜任工作为由，让我自己写[辞职报告|离职申请]",
        "请求依法认定工伤，督促单位支付停工留薪期工资和伤残待遇",
        "[事发时|当时]在场的[工友|班长]都可以作证，[监控|现场照片]也都有",
    ],
    "合同": [
        "我于{year}年入职{org}，签订了[三年|五年]的劳动合同，岗位是[仓库管理员|销售|技术员|司机]",
        "[上个月|前不久]公司突然通知我合同到期不再续签，让我[第二天就不用来上班了|马上办离职]",
        "公司没有提前三十天书面通知，也不愿意支付经济补偿金",
        "我在公司工作期间[从来没有受过处分|一直兢兢业业]，考核也都是合格",
        "公司还扣发了我最后一个月的工资和[年终奖|绩效]，合计{amount}元",
        "我申请了劳动仲裁，仲裁委受理后已经过去{months}个月，一直没有开庭",
        "经济补偿按照工作年限每满一年支付一个月工资，公司应当支付{big}万元左右",
        "公司[人事|领导]还[威胁|警告]我，说再闹就[不给开离职证明|让我在行业里找不到工作]",
    ],
    "失业": [
        "我[去年|今年初]被{org}裁员，按规定可以领取失业保险金",
        "在网上申领时系统一直提示[信息不符|无参保记录]，到窗口又说要回原单位开离职证明",
        "原单位已经搬到{district}，人事专员也换了人，证明迟迟开不出来",
        "现在我已经{months}个月没有收入，[房贷|房租]和孩子的学费都压在身上",
        "请问没有离职证明能否凭劳动合同解除通知书办理失业登记",
        "我还想参加政府组织的职业技能培训，不知道报名需要哪些材料",
        "[窗口|热线]的工作人员[态度很差|说法前后不一]，让我跑了[好几趟|三四趟]",
    ],
    "职称": [
        "我是{district}[一所乡镇学校的教师|一家医院的护士|一名基层技术员]，今年申报中级职称时材料被退回",
        "退回理由是[继续教育学时不够|论文不符合要求]，可我的[学时在平台上|材料]明明已经达到要求",
        "平台客服说是[数据同步有延迟|系统问题]，让我联系人社部门核实",
        "评审的时间节点[马上就要截止了|只剩几天了]，再错过就要等到明年",
        "[同校|同单位]另外[两位|几位][老师|同事]的情况和我一样，我们希望能够延长补交材料的期限",
        "评审结果公示后，有人反映评审过程不公开，评分标准也没有事先公布",
        "我在{org}[挂职|支援]{years}年，这段经历按文件应当[加分|视同基层工作经历]",
    ],
}
# What any letter may say besides its matter: who writes, how hard things are, what was tried.
ASIDES = (
    "[我家里|家中]还有[两个孩子在上学|年迈的父母要照顾|一个生病的老人]，[生活十分困难|日子很难过]",
    "[这件事|此事]已经拖了[大半年|一年多|好几个月]，我[跑了很多部门|打了很多次电话]都没有结果",
    "我[文化程度不高|不太会写字]，[这封信是请|是托]{person}[帮忙写的|代写的]，[如有|有]不妥之处请见谅",
    "[我们|我]相信[政府|组织]一定会为[老百姓|我们]做主",
    "[我|我们][已经|早就][向|给]{district}[有关部门|12345热线]反映过，[对方|他们][答复|说][正在处理|会尽快处理]",
    "[听说|据了解]{org}[还有|另外还有]不少[人|员工]遇到[同样|类似]的问题",
    "[我|本人]{year}年[来到|到]{district}[打工|工作]，[一直|始终]遵纪守法",
    "[如果|要是]这个问题[再|还]得不到解决，[我|我们][真的|实在]不知道该怎么办了",
)
# What a letter tells besides its matter, put together from parts: when, who, what was done, to
# whom, and what came of it; one sentence in many thousand ways.
WHEN = ("去年三月", "{year}年底", "上个月", "前年冬天", "春节前", "入职第二年", "今年五月份", "疫情期间", "国庆节后",
        "上周一", "{month}月初", "三年前", "半个月前", "年初", "暑假里")
WHO = ("我", "我们几个", "我爱人", "我父亲", "车间主任", "人事经理", "财务{surname}会计", "工友老{surname}", "我儿子",
       "班长{surname}师傅", "我和同乡", "我们宿舍的人")
DID = ("找过", "打电话给", "写信给", "当面问了", "专门去了", "请律师联系了", "托人问了", "发短信给", "去找了")
WHOM = ("公司领导", "街道劳动保障所", "区人社局", "工会", "法律援助中心", "社区书记", "市民热线", "镇政府",
        "劳动仲裁院", "项目经理", "原单位的老领导", "档案室")
CAME = ("，但是没有任何结果", "，对方说回去研究研究", "，至今没有下文", "，被告知材料不全", "，答应月底前解决却没有兑现",
        "，人家说这事不归他们管", "，让我们再等等", "，被推来推去", "，只给了一个电话号码", "，说要走流程")


def detail(rng: random.Random) -> str:
    return "".join(rng.choice(part) for part in (WHEN, WHO, DID, WHOM, CAME))


OPENINGS = ("尊敬的领导：您好！", "各位领导好，", "我想反映一个问题。", "领导您好，我是{person}，", "您好！",
            "我是{district}的一名普通职工，", "尊敬的人社厅领导：", "")
CLOSINGS = ("恳请有关部门尽快调查处理，维护我们的合法权益，谢谢！", "希望领导能够重视，给我们一个答复。",
            "盼望早日得到解决，万分感谢！", "请相关部门依法处理，谢谢。", "我们实在没有办法了，只能向上级反映。")
# How the petitions give their contact numbers, as they are stored before 0005: masked already,
# save those typed with several separators (0005) or with tabs (0006).
CONTACTS = (
    ("我的联系电话：[手机号]。", 0.30),
    ("身份证号[身份证号]，电话[手机号]。", 0.06),
    ("工资卡号[银行卡号]，联系电话[手机号]。", 0.04),
    ("联系方式：{phone_runs}。", 0.03),  # 138  1234  5678: 0005
    ("电话{phone_tabs}，卡号{card_tabs}。", 0.01),  # 138<tab>1234<tab>5678: 0006
    ("", 0.56),
)
_CHOICE = re.compile(r"\[([^\[\]]*\|[^\[\]]*)\]")  # [a|b]; a mask such as [手机号] has no bar


def _name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))


def _phone(rng: random.Random, separator: str) -> str:
    digits = f"1{rng.choice('3589')}{rng.randrange(10)}" + "".join(str(rng.randrange(10)) for _ in range(8))
    return separator.join((digits[:3], digits[3:7], digits[7:]))


def _card(rng: random.Random, separator: str) -> str:
    digits = "6222" + "".join(str(rng.randrange(10)) for _ in range(12))
    return separator.join(digits[i:i + 4] for i in range(0, 16, 4))


class Letters:
    """Petitions of 250-500 characters: an opening, sentences of one matter and asides, a contact
    line, a closing. The members of a group write one matter's sentences in the same words, each
    with a sentence of its own, its own name and number."""

    def __init__(self, rng: random.Random, real: list[str] | None = None) -> None:
        self.rng = rng
        self.real = real

    def matter(self) -> dict[str, Any]:
        rng = self.rng
        topic = rng.choice(list(TOPICS))
        org = rng.choice(ORG_WORDS) + rng.choice(ORG_WORDS) + rng.choice(ORG_KINDS)
        place = rng.choice(PLACE_HEADS) + rng.choice(PLACE_HEADS)
        slots = {"org": org, "project": place + rng.choice(PROJECT_KINDS), "district": rng.choice(DISTRICTS),
                 "year": rng.randrange(2005, 2025)}
        chosen = [*rng.sample(TOPICS[topic], 5), *rng.sample(ASIDES, 2), *(detail(rng) for _ in range(7))]
        rng.shuffle(chosen)
        title = f"关于{org[:4]}{topic}问题的反映" if rng.random() < 0.6 else f"{topic}问题求助"
        return {"topic": topic, "sentences": [self.fill(t, slots) for t in chosen], "slots": slots, "title": title,
                "goal": rng.randrange(250, 450)}

    def fill(self, template: str, slots: dict[str, Any]) -> str:
        rng = self.rng
        year = slots.get("year", 2020)
        template = _CHOICE.sub(lambda m: rng.choice(m.group(1).split("|")), template)
        return template.format(
            org=slots.get("org", ""), project=slots.get("project", ""), district=slots.get("district", ""),
            person=_name(rng), surname=rng.choice(SURNAMES), year=year, year2=year + rng.randrange(1, 6), month=rng.randrange(1, 13),
            day=rng.randrange(1, 29), months=rng.randrange(2, 13), years=rng.randrange(2, 16), age=rng.randrange(50, 61),
            amount=rng.randrange(3000, 90000), big=rng.randrange(5, 200),
            phone_runs=_phone(rng, rng.choice(("  ", " - ", ". "))), phone_tabs=_phone(rng, "\t"), card_tabs=_card(rng, "\t"))

    def contact(self) -> str:
        line = self.rng.choices([c for c, _ in CONTACTS], weights=[w for _, w in CONTACTS])[0]
        return self.fill(line, {})

    def letter(self, matter: dict[str, Any] | None = None) -> tuple[str, str]:
        """(title, body): of a matter of its own, or one member's letter of the group's `matter`."""
        rng = self.rng
        if matter is None and self.real is not None:
            body = rng.choice(self.real)
            return body[:12], body + self.contact()
        own = matter is None
        matter = matter or self.matter()
        sentences = list(matter["sentences"])
        if not own:  # a member leaves out a sentence of the letter, or writes one of its own
            sentences[rng.randrange(len(sentences))] = self.fill(detail(rng), matter["slots"])
        parts = [self.fill(rng.choice(OPENINGS), matter["slots"])]
        goal = matter["goal"] + rng.randrange(-15, 25)
        asides = rng.sample(ASIDES, len(ASIDES))
        for sentence in sentences:
            parts.append(sentence + rng.choice("，。。；"))
            if sum(map(len, parts)) >= goal:
                break
        while sum(map(len, parts)) < goal - 30:
            parts.append(self.fill(asides.pop() if asides and rng.random() < 0.3 else detail(rng), matter["slots"]) + "。")
        parts += [self.contact(), rng.choice(CLOSINGS)]
        return matter["title"], "".join(parts)


# --- what is stored with them ------------------------------------------------------------------

DIVISIONS = ("labor_inspection", "social_insurance", "pension", "work_injury", "labor_relations", "employment", "talent")
WORDS = ("工资", "拖欠", "社会保险", "缴纳", "养老金", "工伤", "劳动合同", "补偿", "失业", "职称", "评审", "工龄", "仲裁",
         "补缴", "认定", "公司", "单位", "负责人", "没有", "过年")
RULES = (("risk.collective", "high", "多人"), ("risk.urgent_money", "medium", "生活困难"), ("key_group.migrant", "migrant", "农民工"))


def _span(text: str, start: int, end: int) -> dict[str, Any]:
    return {"start": start, "end": end, "text": text[start:end]}


def explanation(rng: random.Random, text: str) -> dict[str, Any]:
    """As model/explain.py writes one: per head, up to five words with up to three places each,
    and a rule quoting a clause (a contact line among them, now and then)."""
    found = [w for w in WORDS if w in text]
    out = {}
    for head, label in (("division", "labor_inspection"), ("risk", "medium"), ("key_group", "migrant")):
        terms = []
        for word in rng.sample(found, min(5, len(found))):
            spans, at = [], text.find(word)
            while at >= 0 and len(spans) < 3:
                spans.append(_span(text, at, at + len(word)))
                at = text.find(word, at + len(word))
            terms.append({"term": word, "kind": "word", "weight": round(rng.uniform(0.05, 1.5), 4), "spans": spans})
        rules = []
        if rng.random() < 0.4:
            rule, rule_label, explain = rng.choice(RULES)
            start = rng.randrange(max(1, len(text) - 60))
            end = text.find("。", start + 10)
            rules.append({"rule": rule, "label": rule_label, "explain": explain,
                          "spans": [_span(text, start, end if end > 0 else len(text))]})
        out[head] = {"label": label, "terms": terms, "rules": rules}
    return out


STAFF = ("受理员", "复核员", "科员", "窗口")
REASONS = (None, None, None, "与来信人电话核实", "已转劳动监察", "属地办理", "已电话{phone_runs}联系", "回电{phone_tabs}")


def _at(moment: datetime) -> str:
    # As SQLAlchemy writes a DateTime into SQLite (UTC, service.database.UTCDateTime).
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def build(path: Path, size: int, per_day: float, group_share: float, seed: int, real: list[str] | None) -> dict[str, Any]:
    """A SQLite file at revision 0004 holding `size` triages and what is stored with them."""
    from alembic import command

    from model.text import join_fields
    from service.database import alembic_config

    command.upgrade(alembic_config(f"sqlite:///{path}"), "0004")
    with sqlite3.connect(path) as connection:  # as the service leaves it (service.database.make_engine)
        connection.execute("PRAGMA journal_mode=WAL")
    rng = random.Random(seed)
    letters = Letters(rng, real)
    now = datetime.now(UTC).replace(microsecond=0)
    span_days = size / per_day
    # Groups first, each a matter some members wrote about within days; the rest are petitions of their own.
    rows: list[tuple[float, str, str, int | None]] = []
    group = 0
    while len(rows) < size * group_share:
        group += 1
        matter, members = letters.matter(), rng.randrange(3, 16)
        began = rng.uniform(0, span_days)
        rows += [(began + rng.uniform(0, rng.choice((2, 5, 10))), *letters.letter(matter), group) for _ in range(members)]
    rows = rows[:int(size * group_share)]
    rows += [(rng.uniform(0, span_days), *letters.letter(), None) for _ in range(size - len(rows))]
    rows.sort(key=lambda row: row[0])
    connection = sqlite3.connect(path)
    triages, decisions, reviews, audit = [], [], [], []
    chars = []
    for number, (day, title, body, _group) in enumerate(rows):
        received = now - timedelta(days=span_days - day)
        created = received + timedelta(hours=rng.uniform(0.1, 30))
        if created > now:
            created = now
        tid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        text = join_fields(title, body)
        chars.append(len(text))
        suggestion = {"top3": [["labor_inspection", 0.71], ["social_insurance", 0.2], ["pension", 0.05]], "rules": [],
                      "repeat_of": None, "risk_confidence": 0.8, "key_group_confidence": 0.7, "similar": [],
                      "explanation": explanation(rng, text)}
        triages.append((tid, f"XF{received:%Y%m%d}{number:06d}" if rng.random() < 0.7 else None, "网上", _at(received),
                        _at(created), title, body, "benchmark", rng.choice(DIVISIONS), 0.71,
                        rng.choice(("low", "low", "medium", "high")), "none", rng.random() < 0.3,
                        json.dumps(suggestion, ensure_ascii=False)))
        if rng.random() < 0.7:
            for revision in range(1, 2 + (rng.random() < 0.1)):
                who = f"{rng.choice(STAFF)}{_name(rng)}"
                reason = rng.choice(REASONS)
                reason = None if reason is None else letters.fill(reason, {})
                decided = created + timedelta(hours=rng.uniform(1, 200))
                decisions.append((tid, revision, "labor_inspection", "low", "none", revision == 1, who, reason, _at(decided)))
                audit.append((_at(decided), "key:intake", "decision", tid, json.dumps(
                    {"division": "labor_inspection", "risk": "low", "key_group": "none", "revision": revision,
                     "accepted": revision == 1, "decided_by": who, "reason": reason}, ensure_ascii=False)))
        if rng.random() < 0.25:
            note = letters.fill(rng.choice(REASONS) or "已核实", {})
            reviews.append((tid, "low_confidence", "resolved", _at(created), f"复核员{_name(rng)}", _at(created + timedelta(days=2)), note))
            audit.append((_at(created + timedelta(days=2)), "key:reviewer", "review.resolve", tid,
                          json.dumps({"note": note}, ensure_ascii=False)))
        if len(triages) >= 5000 or number == len(rows) - 1:
            with connection:
                connection.executemany(
                    "INSERT INTO triages (id, external_id, channel, received_at, created_at, title_masked, body_masked, "
                    "model_version, division, division_confidence, risk, key_group, needs_review, suggestion) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", triages)
                connection.executemany(
                    "INSERT INTO decisions (triage_id, revision, division, risk, key_group, accepted, decided_by, reason, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", decisions)
                connection.executemany(
                    "INSERT INTO review_items (triage_id, reason, status, created_at, resolved_by, resolved_at, note) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)", reviews)
                connection.executemany("INSERT INTO audit (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
                                       sorted(audit))
            triages, decisions, reviews, audit = [], [], [], []
    counts = {table: connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
              for table in ("triages", "decisions", "review_items", "audit")}
    connection.close()
    return {"rows": counts, "group_members": int(size * group_share), "groups": group,
            "mean_chars": round(statistics.fmean(chars)), "days_of_intake": round(span_days),
            "database_mb": round(path.stat().st_size / 2**20)}


# --- the migrations, each in a process of its own ---------------------------------------------------


def migrate_to(url: str, revision: str) -> dict[str, Any]:
    """Runs the migrations up to `revision` as Database.migrate runs them at start; in a fresh
    process, whose log lines (as `triage serve` shows the service's) are timed: the longest
    silence is how long an operator watching the log saw nothing."""
    import logging

    from alembic import command

    from service.database import alembic_config, migration_engine

    said: list[float] = []

    class Timed(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            said.append(time.perf_counter())
            print(f"  {record.getMessage()}", file=sys.stderr, flush=True)

    service_log = logging.getLogger("service")
    service_log.addHandler(Timed())
    service_log.setLevel(logging.INFO)
    config = alembic_config(url)
    engine = migration_engine(url, create=False)
    before = _status("VmRSS")
    started = time.perf_counter()
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()
    ended = time.perf_counter()
    moments = [started, *said, ended]
    return {"seconds": round(ended - started, 1), "rss_before_mb": round(before / 1024), "peak_rss_mb": round(_status("VmHWM") / 1024),
            "log_lines": len(said), "longest_silence_s": round(max(b - a for a, b in itertools.pairwise(moments)), 1)}


def _status(field: str) -> int:
    """A field of /proc/self/status, in KiB (VmHWM: this process's peak resident memory, which,
    unlike ru_maxrss, does not carry the parent's over fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


# --- the same-matter lists --------------------------------------------------------------------------


def lists(path: Path, seed: int) -> dict[str, Any]:
    """The index built as at a worker's start, then GET /v1/emerging and the case page's lists;
    in a fresh process, as a worker is."""
    from sqlalchemy import func, select

    from service.database import Database, TriageRecord
    from service.routers.emerging import MOST_DAYS, emerging
    from service.settings import Settings
    from service.similar import SharedMatterIndex, later_cases
    from service.web.intake import same_matter

    settings = Settings(database_url=f"sqlite:///{path}")
    database = Database(settings.database_url)
    shared = SharedMatterIndex(settings.similar_window_days, settings.link_threshold)
    started = time.perf_counter()
    with database.sessions() as session:
        shared.refresh(session)
    built = time.perf_counter() - started
    out: dict[str, Any] = {"index_built_s": round(built, 1), "indexed": len(shared.index), "index_rss_mb": round(_status("VmRSS") / 1024)}
    for name, days, repeats in (("emerging_default", None, 3), ("emerging_widest", float(MOST_DAYS), 1)):
        times, groups = [], 0
        for _ in range(repeats):
            with database.sessions() as session:
                began = time.perf_counter()
                found = emerging(session=session, settings=settings, matters=shared, _=None, days=days, min_size=None,
                                 until=None, limit=200)
                times.append(time.perf_counter() - began)
            groups = len(found)
        out[name] = {"days": days or settings.emerging_days, "groups": groups, "seconds_median": round(statistics.median(times), 3)}
    rng = random.Random(seed)
    with database.sessions() as session:
        keys = shared.index.keys_between(float("-inf"), float("inf"))
        sample = rng.sample(keys, min(200, len(keys)))
        times, found = [], 0
        for key in sample:
            began = time.perf_counter()
            row = session.get(TriageRecord, key)
            same_matter(session, row)
            count = later_cases(session, shared, key, 5)[1]
            times.append(time.perf_counter() - began)
            found += count > 0
        out["case_page_lists"] = {"cases": len(sample), "with_later_cases": found,
                                  "ms_p50": round(1e3 * statistics.median(times), 1),
                                  "ms_max": round(1e3 * max(times), 1)}
        out["stored"] = session.scalar(select(func.count()).select_from(TriageRecord))
    database.engine.dispose()
    out["peak_rss_mb"] = round(_status("VmHWM") / 1024)
    return out


def in_a_process(*arguments: str) -> dict[str, Any]:
    """This file run with `arguments` in a process of its own, its figures read from its stdout."""
    # Its log lines go to this process's stderr as they come.
    out = subprocess.run([sys.executable, __file__, *arguments], stdout=subprocess.PIPE, text=True, check=False, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(arguments)} failed (exit {out.returncode})")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- the run -------------------------------------------------------------------------------------------


def read_real(path: Path) -> list[str]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return [body for row in csv.DictReader(handle) if len(body := (row.get("body") or "").strip()) >= 100]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="20000,100000,200000", help="stored triages, one database each (default: %(default)s)")
    parser.add_argument("--per-day", type=float, default=180.0,
                        help="petitions received a day: the sizes are that many days of intake (default: %(default)s)")
    parser.add_argument("--group-share", type=float, default=0.08, help="share of petitions in groups (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--real", action="store_true", help=f"petitions' bodies read from {REAL} at run time")
    parser.add_argument("--keep", help="build the databases in DIR and leave them there (default: a temporary folder)")
    parser.add_argument("--json", default=str(RESULTS), help="where the figures go (default: %(default)s)")
    # What runs in a process of its own.
    parser.add_argument("--migrate", nargs=2, metavar=("DB", "REVISION"), help=argparse.SUPPRESS)
    parser.add_argument("--lists", metavar="DB", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.migrate:
        print(json.dumps(migrate_to(f"sqlite:///{args.migrate[0]}", args.migrate[1])))
        return 0
    if args.lists:
        print(json.dumps(lists(Path(args.lists), args.seed)))
        return 0
    real = read_real(REAL) if args.real else None
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg(),
                    "note": "a machine shared with other work (other helpers' runs): the load averages say how busy it was"},
        "texts": f"read from {REAL} at run time" if real else "generated by this benchmark",
        "per_day": args.per_day, "group_share": args.group_share, "seed": args.seed, "sizes": []}
    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="stored-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        for size in sizes:
            path = workdir / f"triage-{size}.db"
            for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                stale.unlink(missing_ok=True)
            log(f"{size:,}: building the database at revision 0004")
            started = time.perf_counter()
            entry: dict[str, Any] = {"size": size, "built": build(path, size, args.per_day, args.group_share, args.seed, real)}
            entry["built"]["seconds"] = round(time.perf_counter() - started)
            log(f"{size:,}: built in {entry['built']['seconds']} s ({entry['built']['database_mb']} MB); migrating")
            for revision in ("0005", "0006"):
                started = time.perf_counter()
                entry[revision] = in_a_process("--migrate", str(path), revision)
                entry[revision]["process_seconds"] = round(time.perf_counter() - started, 1)
                entry[revision]["load_avg"] = os.getloadavg()[0]
                log(f"{size:,}: {revision} took {entry[revision]['seconds']} s, peak {entry[revision]['peak_rss_mb']} MB")
            entry["database_mb_after"] = round(path.stat().st_size / 2**20)
            entry["lists"] = in_a_process("--lists", str(path), "--seed", str(args.seed))
            entry["lists"]["load_avg"] = os.getloadavg()[0]
            log(f"{size:,}: {json.dumps(entry['lists'], ensure_ascii=False)}")
            results["sizes"].append(entry)
            for done in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                if not args.keep:
                    done.unlink(missing_ok=True)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    results["machine"]["load_avg_at_end"] = os.getloadavg()
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    log(f"wrote {out}")
    return 0


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
