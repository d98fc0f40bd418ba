"""The simulated agencies behind the file-drop sources: who each knows, how
often it delivers, how it errs and how it makes up its facts."""

from __future__ import annotations

from simulation.profiles import CAREFUL, ORDINARY, SLOPPY, SimProfile

CATEGORIES = ("服装", "数码", "食品", "家居", "图书", "美妆", "母婴", "运动")
MERCHANTS = ("便利店", "超市", "餐厅", "加油站", "药店", "书店", "咖啡馆")
TRAINS = ("G101", "G102", "D2201", "K511", "Z97", "G7001", "D3025", "T109")
FLIGHTS = ("CA1501", "MU5101", "CZ3101", "HU7801", "ZH9101", "3U8881")
AIRPORTS = ("PEK", "PVG", "CAN", "SZX", "CTU", "XIY", "KMG", "HGH", "WUH", "NKG")
DISPUTES = ("邻里纠纷", "婚姻家庭纠纷", "物业纠纷", "损害赔偿纠纷", "劳务纠纷")
MATTERS = ("继承公证", "委托公证", "声明公证", "学历公证", "房产公证")
LICENCE_CLASSES = ("C1", "C2", "B1", "B2", "A1", "A2")
LICENCE_TYPES = (
    "食品经营许可证",
    "道路运输经营许可证",
    "危险化学品经营许可证",
    "医疗器械经营许可证",
)
VIOLATIONS = ("1344", "1625", "1301", "1039", "7036", "1636")
REASONS = ("虚假宣传", "未按规定明码标价", "销售不合格产品", "无照经营", "商标侵权")
PERIODS = ("2025-10", "2025-11", "2025-12", "2026-01")

_LIST = {
    "fact:issuing_body": ("ctx", "issuing_body"),
    "fact:legal_basis": ("ctx", "legal_basis"),
    "fact:case_no": ("ctx", "case_no"),
    "fact:start_date": ("ctx", "start_date"),
    "fact:expiry_date": ("ctx", "expiry_date"),
}
_CASE = {
    "fact:case_no": ("ctx", "case_no"),
    "fact:court": ("ctx", "court"),
    "fact:cause": ("ctx", "cause"),
    "fact:amount": ("ctx", "amount"),
    "fact:event_date": ("day",),
}


def _f(d: dict) -> dict:
    return {k.removeprefix("fact:"): v for k, v in d.items()}


PROFILES: dict[str, SimProfile] = {
    # municipal
    "residence_permits": SimProfile(
        "migrants",
        CAREFUL,
        coverage=0.8,
        key_prefix="JZZ",
        facts=_f({"fact:issue_date": ("back", 700), "fact:valid_until": ("ahead", 30, 1000)}),
    ),
    "marriage_registry": SimProfile(
        "married",
        CAREFUL,
        coverage=0.7,
        key_prefix="J",
        facts=_f(
            {"fact:event_date": ("back", 9000), "fact:issuing_body": ("city", "民政局婚姻登记处")}
        ),
    ),
    "property_registry": SimProfile(
        "household_heads",
        CAREFUL,
        coverage=0.6,
        key_prefix="BDC",
        facts=_f({"fact:area_sqm": ("money", 90, 0.3), "fact:event_date": ("back", 5000)}),
    ),
    "provident_fund": SimProfile(
        "employed",
        ORDINARY,
        coverage=0.5,
        key_prefix="GJJ",
        facts=_f({"fact:monthly_deposit": ("money", 800, 0.5), "fact:opened": ("back", 4000)}),
    ),
    "tax_filings": SimProfile(
        "employed",
        CAREFUL,
        daily_rate=0.004,
        key_prefix="GS",
        facts=_f(
            {
                "fact:period": ("choice", PERIODS),
                "fact:amount": ("money", 600, 1.0),
                "fact:event_date": ("day",),
            }
        ),
    ),
    "utility_bills": SimProfile(
        "household_heads",
        ORDINARY,
        daily_rate=0.01,
        key_prefix="SD",
        facts=_f({"fact:usage_kwh": ("money", 200, 0.5), "fact:event_date": ("day",)}),
    ),
    "market_penalties": SimProfile(
        "businesses",
        ORDINARY,
        daily_rate=0.002,
        key_prefix="SJ",
        facts=_f(
            {
                "fact:amount": ("money", 20000, 1.0),
                "fact:event_date": ("day",),
                "fact:reason": ("choice", REASONS),
            }
        ),
    ),
    "business_licences": SimProfile(
        "businesses",
        CAREFUL,
        coverage=0.4,
        key_prefix="XK",
        facts=_f(
            {
                "fact:licence_type": ("choice", LICENCE_TYPES),
                "fact:valid_until": ("ahead", 30, 1800),
            }
        ),
    ),
    "rental_registry": SimProfile(
        "persons",
        ORDINARY,
        coverage=0.15,
        key_prefix="ZL",
        facts=_f({"fact:event_date": ("back", 700), "fact:monthly_rent": ("money", 3000, 0.5)}),
    ),
    "employment_registry": SimProfile(
        "employed",
        ORDINARY,
        coverage=0.6,
        key_prefix="JY",
        facts=_f({"fact:event_date": ("back", 3000)}),
    ),
    # court
    "civil_judgments": SimProfile(
        "litigants", CAREFUL, daily_rate=0.01, key_prefix="WS", facts=_f(_CASE)
    ),
    "judgment_defaulters": SimProfile(
        "listed:defaulter", CAREFUL, key_prefix="SX", facts=_f(_LIST)
    ),
    "consumption_restrictions": SimProfile(
        "listed:consumption_restriction", CAREFUL, key_prefix="XF", facts=_f(_LIST)
    ),
    "hearing_notices": SimProfile(
        "litigants",
        ORDINARY,
        daily_rate=0.01,
        key_prefix="GG",
        facts=_f({**_CASE, "fact:event_date": ("ahead", 5, 60)}),
    ),
    "bankruptcy_cases": SimProfile(
        "business_litigants", CAREFUL, daily_rate=0.005, key_prefix="PC", facts=_f(_CASE)
    ),
    "labour_arbitration": SimProfile(
        "employed",
        ORDINARY,
        daily_rate=0.0005,
        key_prefix="LZ",
        facts=_f({"fact:amount": ("money", 15000, 0.8), "fact:event_date": ("day",)}),
    ),
    "mediation_records": SimProfile(
        "persons",
        SLOPPY,
        daily_rate=0.0005,
        key_prefix="TJ",
        facts=_f({"fact:dispute_type": ("choice", DISPUTES), "fact:event_date": ("day",)}),
    ),
    "notary_records": SimProfile(
        "persons",
        CAREFUL,
        daily_rate=0.0008,
        key_prefix="GZ",
        facts=_f({"fact:matter": ("choice", MATTERS), "fact:event_date": ("day",)}),
    ),
    "court_fees": SimProfile(
        "litigants",
        CAREFUL,
        daily_rate=0.01,
        key_prefix="JF",
        facts=_f({**_CASE, "fact:amount": ("money", 500, 0.8)}),
    ),
    "enforced_companies": SimProfile(
        "business_enforced",
        CAREFUL,
        key_prefix="ZX",
        facts=_f({**_CASE, "fact:event_date": ("ctx", "filed")}),
    ),
    # commercial
    "ecommerce_orders": SimProfile(
        "persons",
        SLOPPY,
        daily_rate=0.02,
        key_prefix="DD",
        facts=_f(
            {
                "fact:amount": ("money", 120, 1.0),
                "fact:category": ("choice", CATEGORIES),
                "fact:event_date": ("day",),
            }
        ),
    ),
    "mobile_payments": SimProfile(
        "persons",
        ORDINARY,
        daily_rate=0.03,
        key_prefix="ZF",
        facts=_f(
            {
                "fact:amount": ("money", 60, 1.2),
                "fact:merchant": ("choice", MERCHANTS),
                "fact:event_date": ("day",),
            }
        ),
    ),
    "consumer_loans": SimProfile(
        "employed",
        ORDINARY,
        daily_rate=0.001,
        key_prefix="DK",
        facts=_f(
            {
                "fact:amount": ("money", 30000, 0.8),
                "fact:term_months": ("int", 3, 36),
                "fact:event_date": ("day",),
            }
        ),
    ),
    "hotel_stays": SimProfile(
        "persons",
        ORDINARY,
        daily_rate=0.005,
        key_prefix="LG",
        facts=_f(
            {
                "fact:hotel": ("city", "大酒店"),
                "fact:event_date": ("day",),
                "fact:check_out": ("ahead", 1, 5),
            }
        ),
    ),
    "bike_sharing": SimProfile(
        "persons",
        SLOPPY,
        daily_rate=0.01,
        key_prefix="DC",
        facts=_f({"fact:minutes": ("int", 3, 60), "fact:event_date": ("day",)}),
    ),
    "car_rental": SimProfile(
        "drivers",
        ORDINARY,
        daily_rate=0.002,
        key_prefix="ZC",
        facts=_f(
            {
                "fact:pickup": ("city", ""),
                "fact:rental_days": ("int", 1, 14),
                "fact:event_date": ("day",),
            }
        ),
    ),
    "food_delivery": SimProfile(
        "persons",
        SLOPPY,
        daily_rate=0.02,
        key_prefix="WM",
        facts=_f(
            {
                "fact:amount": ("money", 45, 0.6),
                "fact:merchant": ("choice", MERCHANTS),
                "fact:event_date": ("day",),
            }
        ),
    ),
    "insurance_policies": SimProfile(
        "persons",
        CAREFUL,
        coverage=0.3,
        key_prefix="BD",
        facts=_f({"fact:premium": ("money", 3000, 0.8), "fact:event_date": ("back", 1500)}),
    ),
    "travel_agency": SimProfile(
        "passport_holders",
        ORDINARY,
        daily_rate=0.003,
        key_prefix="OTA",
        facts=_f(
            {
                "fact:destination": ("choice", ("东京", "曼谷", "新加坡", "首尔", "巴黎")),
                "fact:event_date": ("ahead", 3, 90),
            }
        ),
    ),
    "loyalty_members": SimProfile(
        "persons",
        SLOPPY,
        coverage=0.25,
        key_prefix="HY",
        facts=_f({"fact:event_date": ("back", 2000)}),
    ),
    # transport
    "rail_tickets": SimProfile(
        "persons",
        CAREFUL,
        daily_rate=0.01,
        key_prefix="E",
        facts=_f(
            {
                "fact:train_no": ("choice", TRAINS),
                "fact:from_station": ("city", "站"),
                "fact:to_station": ("city", "站"),
                "fact:event_date": ("ahead", 0, 14),
            }
        ),
    ),
    "air_bookings": SimProfile(
        "persons",
        ORDINARY,
        daily_rate=0.004,
        key_prefix="PNR",
        facts=_f(
            {
                "fact:flight_no": ("choice", FLIGHTS),
                "fact:from_airport": ("choice", AIRPORTS),
                "fact:to_airport": ("choice", AIRPORTS),
                "fact:event_date": ("ahead", 0, 30),
            }
        ),
    ),
    "flight_ban_list": SimProfile("listed:flight_ban", CAREFUL, key_prefix="FB", facts=_f(_LIST)),
    "rail_ban_list": SimProfile("listed:rail_ban", CAREFUL, key_prefix="RB", facts=_f(_LIST)),
    "traffic_violations": SimProfile(
        "vehicle_owners",
        ORDINARY,
        daily_rate=0.01,
        key_prefix="WF",
        facts=_f(
            {
                "fact:violation_code": ("choice", VIOLATIONS),
                "fact:amount": ("choice", ("50", "100", "200")),
                "fact:points": ("int", 0, 6),
                "fact:event_date": ("back", 3),
            }
        ),
    ),
    "driving_licences": SimProfile(
        "drivers",
        CAREFUL,
        coverage=0.95,
        key_prefix="JZ",
        facts=_f(
            {"fact:licence_class": ("choice", LICENCE_CLASSES), "fact:event_date": ("back", 9000)}
        ),
    ),
    "metro_cards": SimProfile(
        "persons",
        SLOPPY,
        daily_rate=0.02,
        key_prefix="MC",
        facts=_f({"fact:amount": ("choice", ("50", "100", "200")), "fact:event_date": ("day",)}),
    ),
    "highway_tolls": SimProfile(
        "vehicle_owners",
        ORDINARY,
        daily_rate=0.02,
        key_prefix="TX",
        facts=_f(
            {
                "fact:toll_station": ("city", "收费站"),
                "fact:amount": ("money", 40, 0.7),
                "fact:event_date": ("day",),
            }
        ),
    ),
    "coach_tickets": SimProfile(
        "persons",
        ORDINARY,
        daily_rate=0.004,
        key_prefix="CT",
        facts=_f(
            {
                "fact:from_station": ("city", "汽车站"),
                "fact:to_station": ("city", "汽车站"),
                "fact:event_date": ("ahead", 0, 7),
            }
        ),
    ),
    "etc_accounts": SimProfile(
        "vehicle_owners",
        CAREFUL,
        coverage=0.6,
        key_prefix="ETC",
        facts=_f({"fact:event_date": ("back", 2000)}),
    ),
}
